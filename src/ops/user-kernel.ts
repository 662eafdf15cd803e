// A kernel of the user's own for an op slot (`r3gpu tune --kernel linear.decode=mine.wgsl`): it takes the slot's
// family contract (bindings and uniforms of the built-in reference, today's kernel) and is dispatched as that
// reference is, so it can be checked against it and timed beside the built-ins at the model's shapes:
//   linear.*:    the bindings and uniforms of shaders/linear.wgsl, WG = 64, compiled with TM = 1, 2, 4 and 8 input
//                rows per invocation (the step's member is the fewest that cover its rows, at most 8), grid
//                (ceil(rows / W_GROUPS / 64), ceil(M / TM)): an invocation owns W_GROUPS weight rows;
//   attention.*: the bindings and uniforms of shaders/attention.wgsl, WG = 64, MAX_DPT = 4, grid (T, n_heads).
import type { KernelDecl } from "../gpu/kernel.ts";
import { checkKernelSource } from "../gpu/wgsl.ts";
import { ATTENTION, onlineVariant } from "./attention-online.ts";
import type { AttentionVariant } from "./attention.ts";
import { ATTENTION_VARIANTS, LINEAR_VARIANTS } from "./kernel-variants.ts";
import { LINEAR_ROWS, ROWS_DECODE } from "./linear-rows.ts";
import type { LinearKernel, LinearVariant } from "./linear.ts";
import { OP_SLOTS, type OpSlot } from "./variant.ts";

/** Adds the user's WGSL as a variant of `slot`, named `name`; a shader that breaks the contract is refused, every departure named. */
export function addUserKernel(slot: OpSlot, name: string, code: string, where: string): LinearVariant | AttentionVariant {
  if (!OP_SLOTS.includes(slot)) throw new Error(`--kernel ${slot}=${where}: no such op slot (${OP_SLOTS.join(", ")})`);
  // The fused slots' contracts are the split-K family's with an epilogue, not ones a user kernel takes yet.
  if (slot === "swiglu.decode" || slot === "lm_head.decode") throw new Error(`--kernel ${slot}=${where}: user kernels are taken for the linear.* and attention.* slots`);
  const about = `your kernel, ${where}`;
  const member = (base: KernelDecl, suffix: string) => ({ ...base, name: `${name}${suffix}`, shader: name, code });
  if (slot.startsWith("linear.")) {
    const members = LINEAR_ROWS.map((m) => member(m, `.tm${m.constants!.TM}`) as LinearKernel);
    refuseDrift(members[0], code, where);
    const v: LinearVariant = {
      ...ROWS_DECODE, slot: slot as LinearVariant["slot"], name, about, members,
      member: (M) => members.find((m) => m.constants!.TM >= M) ?? members.at(-1)!,
    };
    LINEAR_VARIANTS.push(v);
    return v;
  }
  const decl = member(ATTENTION, "") as typeof ATTENTION;
  refuseDrift(decl, code, where);
  const v = onlineVariant(slot as AttentionVariant["slot"], name, about, decl);
  ATTENTION_VARIANTS.push(v);
  return v;
}

function refuseDrift(decl: KernelDecl, code: string, where: string): void {
  const errors = checkKernelSource(decl, code);
  if (errors.length > 0) {
    throw new Error(`${where} does not keep its op's contract:\n${errors.map((e) => `  ${e.replace(/^kernel [^:]*: /, "")}`).join("\n")}`);
  }
}
