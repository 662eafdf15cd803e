// `r3gpu download`: a model from the Hugging Face hub (or the hub at HF_ENDPOINT) into a folder that the other
// commands take as MODEL_DIR. Resumable: run it again after an interruption.
import { basename } from "node:path";
import { DEFAULT_HUB_URL, downloadModel } from "../hub/download.ts";
import { UsageError } from "./args.ts";
import type { DownloadArgs } from "./commands.ts";
import { Progress } from "./progress.ts";

export async function download({ positionals, flags: values }: DownloadArgs): Promise<number> {
  const repo = positionals.REPO_ID;
  if (!/^([\w.-]+\/)?[\w.-]+$/.test(repo)) throw new UsageError(`REPO_ID "${repo}" is not a repository id such as ytgui/Search-R3.0-Small`);
  const dir = values.dir ?? basename(repo);
  const hubUrl = process.env.HF_ENDPOINT || DEFAULT_HUB_URL;

  const bar = new Progress("downloading");
  let report;
  try {
    report = await downloadModel({
      repo, dir, revision: values.revision, hubUrl, accessToken: process.env.HF_TOKEN || undefined,
      onProgress: (p) => bar.update(p.bytes, p.totalBytes, "B", p.file),
    });
  } finally {
    bar.done();
  }
  const mib = (n: number) => `${(n / (1 << 20)).toFixed(1)} MiB`;
  const count = (status: string) => report.files.filter((f) => f.status === status).length;
  const total = report.files.reduce((sum, f) => sum + f.size, 0);
  console.log(`${repo} at ${report.commit} in ${report.dir}: ${report.files.length} files, ${mib(total)}; fetched ` +
    `${mib(report.fetchedBytes)} (${count("downloaded")} downloaded, ${count("resumed")} resumed, ` +
    `${count("present")} already complete)`);
  return 0;
}
