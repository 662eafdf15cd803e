// Run as `vite build web` (or `vite web` for a dev server): the root is web/, the output the repository's dist-web/.
import { defineConfig } from "vite";

export default defineConfig({
  // Relative asset URLs, so that the built page works from any path of any static server.
  base: "./",
  build: {
    outDir: "../dist-web",
    // dist-web lies outside the root, where Vite would otherwise refuse to empty it.
    emptyOutDir: true,
    target: "es2022",
  },
  // The page imports the engine from ../src.
  server: { fs: { allow: [".."] } },
});
