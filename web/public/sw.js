// Keeps the page usable without a network once it has been opened: the page and its assets are cached, taken from
// the network first (so that a new build is picked up) and from the cache when the network fails. Model files are
// never cached here; they come from the user's disk, or from a server the user chose.
const CACHE = "r3gpu-page";
const scope = new URL(self.registration.scope);

/** The cache key of a request for the page itself or one of its assets; undefined for anything else. */
function pageKey(request) {
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== scope.origin) return undefined;
  if (url.pathname === scope.pathname || url.pathname === `${scope.pathname}index.html`) return scope.href;
  return url.pathname.startsWith(`${scope.pathname}assets/`) ? url.href : undefined;
}

// The page was loaded before this worker existed, so its files are fetched once more to fill the cache.
async function cachePage() {
  const cache = await caches.open(CACHE);
  const index = await fetch(scope, { cache: "no-cache" });
  if (!index.ok) throw new Error(`${scope.href}: HTTP ${index.status}`);
  const html = await index.clone().text();
  const assets = [...html.matchAll(/(?:src|href)="(\.\/assets\/[^"]+)"/g)].map((m) => new URL(m[1], scope).href);
  await cache.put(scope.href, index);
  await cache.addAll(assets);
}

self.addEventListener("install", (event) => event.waitUntil(cachePage().then(() => self.skipWaiting())));
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("fetch", (event) => {
  const key = pageKey(event.request);
  if (!key) return;
  event.respondWith(fetch(event.request).then(
    (response) => {
      if (response.ok) {
        const copy = response.clone();
        event.waitUntil(caches.open(CACHE).then((cache) => cache.put(key, copy)));
      }
      return response;
    },
    async () => (await caches.match(key)) ?? Response.error(),
  ));
});
