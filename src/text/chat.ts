// Chat templates: a model's Jinja template rendered the way transformers' apply_chat_template does.
import { Environment, Interpreter, Template } from "@huggingface/jinja";
import type { TextTokenizer } from "./tokenizer.ts";

export interface ChatMessage {
  role: string;
  content: string;
  /** Templates may read more fields, e.g. an assistant message's tool_calls. */
  [key: string]: unknown;
}

export interface ChatOptions {
  /** Append the header of an assistant turn, so that generation continues as the assistant. */
  addGenerationPrompt?: boolean;
  bosToken?: string;
  eosToken?: string;
  /** Tool (function) schemas, as JSON-schema objects. */
  tools?: object[];
  /** Documents for retrieval-augmented templates. */
  documents?: object[];
  /** Further template variables, like extra keyword arguments to apply_chat_template. */
  variables?: Record<string, unknown>;
}

// A template comes with the model files, so it is rendered with bounds, as transformers renders it in jinja2's
// sandbox. MAX_RANGE is the sandbox's own bound on range(); the others bound time (the steps of the interpreter, about
// 1 s) and memory (any one string or list built on the way: a prompt is at most the tokenizer's input bound, 1 Mi
// characters, so four times that is room enough).
const MAX_RANGE = 100_000;
const MAX_STEPS = 2_000_000;
const MAX_CHARS = 4 << 20;
const MAX_ITEMS = 1 << 20;
// jinja2's indent and tojson take a width, which a template could make large enough to exhaust memory in one step.
const MAX_JSON_INDENT = 64;

// The package's declarations import their siblings without file extensions, which NodeNext resolution cannot follow
// (a bundler's can), and they mark private the methods overridden below: the interpreter is typed here by what this
// module uses of it.
interface RuntimeValue {
  type: string;
  value: unknown;
}
interface JinjaInterpreter {
  evaluate(statement: unknown, environment: unknown): RuntimeValue;
  run(program: unknown): RuntimeValue;
  // Internal to the library (not in its declarations), and overridden below to check widths before any allocation.
  applyFilter(operand: RuntimeValue, filter: FilterNode, environment: unknown): RuntimeValue;
  evaluateArguments(args: unknown[], environment: unknown): [RuntimeValue[], Map<string, RuntimeValue>];
  evaluateBlock(statements: unknown[], environment: unknown): RuntimeValue;
}
interface FilterNode {
  type: string;
  callee?: { type: string; value: string };
  args?: unknown[];
}
const JinjaInterpreter = Interpreter as unknown as new (env: unknown) => JinjaInterpreter;

// A block (a loop's body on each pass, an if's branch, a macro's body) costs the library about as much as eight
// expressions: each loop pass makes two scopes and a map of loop variables.
const BLOCK_STEPS = 8;

/** The library's interpreter, counting its steps and measuring every string and list it makes. */
class BoundedInterpreter extends JinjaInterpreter {
  private steps = 0;

  private step(n: number): void {
    this.steps += n;
    if (this.steps > MAX_STEPS) throw new Error(`rendering took more than ${MAX_STEPS} steps (a loop that does not end?)`);
  }

  override evaluateBlock(statements: unknown[], environment: unknown): RuntimeValue {
    this.step(BLOCK_STEPS);
    return super.evaluateBlock(statements, environment);
  }

  override evaluate(statement: unknown, environment: unknown): RuntimeValue {
    this.step(1);
    const value = super.evaluate(statement, environment);
    if (value.type === "StringValue" && (value.value as string).length > MAX_CHARS) {
      throw new Error(`rendering made a string of more than ${MAX_CHARS} characters`);
    }
    if (value.type === "ArrayValue" && (value.value as unknown[]).length > MAX_ITEMS) {
      throw new Error(`rendering made a list of more than ${MAX_ITEMS} items`);
    }
    return value;
  }

  override applyFilter(operand: RuntimeValue, filter: FilterNode, environment: unknown): RuntimeValue {
    const name = filter.type === "CallExpression" && filter.callee?.type === "Identifier" ? filter.callee.value : undefined;
    if (name === "indent" && operand.type === "StringValue") {
      const [args, kwargs] = this.evaluateArguments(filter.args ?? [], environment);
      const width = args[0]?.value ?? kwargs.get("width")?.value ?? 0;
      const text = operand.value as string;
      const lines = text.split("\n").length;
      if (typeof width === "number" && text.length + width * lines > MAX_CHARS) {
        throw new Error(`indent(${width}) of ${lines} lines would make a string of more than ${MAX_CHARS} characters`);
      }
    } else if (name === "tojson") {
      const indent = this.evaluateArguments(filter.args ?? [], environment)[1].get("indent")?.value;
      if (typeof indent === "number" && indent > MAX_JSON_INDENT) throw new Error(`tojson(indent=${indent}) is more than ${MAX_JSON_INDENT}`);
    }
    return super.applyFilter(operand, filter, environment);
  }
}

function range(start: number, stop?: number, step = 1): number[] {
  if (stop === undefined) [start, stop] = [0, start];
  for (const [name, v] of [["start", start], ["stop", stop], ["step", step]] as const) {
    if (!Number.isInteger(v)) throw new Error(`range() ${name} must be an integer, got ${JSON.stringify(v)}`);
  }
  if (step === 0) throw new Error("range() step must not be zero");
  const n = Math.max(0, Math.ceil((stop - start) / step));
  if (n > MAX_RANGE) throw new Error(`range() of ${n} items is more than the ${MAX_RANGE} allowed`);
  return Array.from({ length: n }, (_, i) => start + i * step);
}

// The library's strftime_now, for the directives it knows.
function strftimeNow(format: string): string {
  const d = new Date();
  const pad = (n: number) => String(n).padStart(2, "0");
  const month = (style: "long" | "short") => new Intl.DateTimeFormat(undefined, { month: style }).format(d);
  return String(format).replace(/%[YmdbBHM%]/g, (t) => ({
    "%Y": String(d.getFullYear()), "%m": pad(d.getMonth() + 1), "%d": pad(d.getDate()), "%b": month("short"),
    "%B": month("long"), "%H": pad(d.getHours()), "%M": pad(d.getMinutes()), "%%": "%",
  })[t]!);
}

// The globals @huggingface/jinja's Template.render sets (its setupGlobals is not exported), with range bounded.
const GLOBALS: Record<string, unknown> = {
  false: false, true: true, none: null, False: false, True: true, None: null,
  raise_exception: (message: string) => { throw new Error(message); },
  range,
  strftime_now: strftimeNow,
};

export class ChatTemplate {
  private readonly program: Template["parsed"];

  /**
   * `specialTokens`: what the template sees as bos_token, eos_token, ... unless the render options override them.
   * `origin` names where the template came from in errors (e.g. "tokenizer_config.json").
   */
  constructor(
    source: string,
    private readonly specialTokens: Readonly<Record<string, string | string[]>> = {},
    private readonly origin = "chat template",
  ) {
    try {
      this.program = new Template(source).parsed;
    } catch (e) {
      throw new Error(`${origin}: the chat template does not parse: ${describe(e)}`);
    }
  }

  static fromTokenizer(tokenizer: TextTokenizer): ChatTemplate {
    if (tokenizer.chatTemplate === undefined) throw new Error("this model's tokenizer has no chat template");
    return new ChatTemplate(tokenizer.chatTemplate, tokenizer.specialTokens, `${tokenizer.chatTemplateFile} chat_template`);
  }

  render(messages: readonly ChatMessage[], opts: ChatOptions = {}): string {
    const variables: Record<string, unknown> = { ...this.specialTokens, ...opts.variables };
    if (opts.bosToken !== undefined) variables.bos_token = opts.bosToken;
    if (opts.eosToken !== undefined) variables.eos_token = opts.eosToken;
    const env = new Environment();
    try {
      // As in Template.render, a variable may not take the name of a global.
      for (const [name, value] of Object.entries(GLOBALS)) env.set(name, value);
      for (const [name, value] of Object.entries({
        ...variables,
        messages,
        // transformers passes None for these when absent, which templates test with `is none` / `is defined`.
        tools: opts.tools ?? null,
        documents: opts.documents ?? null,
        add_generation_prompt: opts.addGenerationPrompt ?? false,
      })) env.set(name, value);
      return new BoundedInterpreter(env).run(this.program).value as string;
    } catch (e) {
      throw new Error(`${this.origin}: ${describe(e)}`);
    }
  }
}

function describe(e: unknown): string {
  // The library parses and renders by recursion: a deeply nested template, or messages, run out of stack.
  if (e instanceof RangeError && /call stack/.test(e.message)) return `${e.message} (nested too deeply)`;
  return (e as Error).message;
}

export function renderChat(template: string, messages: readonly ChatMessage[], opts: ChatOptions = {}): string {
  return new ChatTemplate(template).render(messages, opts);
}
