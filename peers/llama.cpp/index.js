// The peer's one entry point: src/llamacpp/peer-worker.ts imports this file by path, so that node-llama-cpp
// resolves from this folder's node_modules (scripts/setup-llamacpp.sh) and never from r3gpu's own.
export * from "node-llama-cpp";
