/**
 * The questions `accelerate config` asks, behind a small interface: the real
 * one draws them with @inquirer/prompts; tests answer from a script.
 * @module
 */

/** One choice of a select question. */
export interface Choice<T> {
  name: string;
  value: T;
}

/** Asks typed questions. Every question has a stable `id` (tests answer by id). */
export interface Prompter {
  select<T>(q: { id: string; message: string; choices: readonly Choice<T>[]; default?: T }): Promise<T>;
  input(q: { id: string; message: string; default?: string; required?: boolean }): Promise<string>;
  number(q: { id: string; message: string; default?: number; min?: number; max?: number; integer?: boolean }): Promise<number>;
  confirm(q: { id: string; message: string; default: boolean }): Promise<boolean>;
}

/** The interactive prompter, drawing questions on the terminal with @inquirer/prompts. */
export async function inquirerPrompter(): Promise<Prompter> {
  const prompts = await import('@inquirer/prompts');
  return {
    select: (q) => prompts.select({ message: q.message, choices: q.choices.map((c) => ({ name: c.name, value: c.value })), default: q.default }),
    input: (q) =>
      prompts.input({
        message: q.message,
        default: q.default,
        required: q.required,
      }),
    number: async (q) => {
      const value = await prompts.number({
        message: q.message,
        default: q.default,
        min: q.min,
        max: q.max,
        step: q.integer === false ? 'any' : 1,
        required: true,
      });
      return value;
    },
    confirm: (q) => prompts.confirm({ message: q.message, default: q.default }),
  };
}

/**
 * A prompter answering from `answers` (question id -> answer); a question
 * without an answer takes its default, and one without a default throws.
 * `asked` records the ids in order.
 */
export function scriptedPrompter(answers: Readonly<Record<string, unknown>>): Prompter & { asked: string[] } {
  const asked: string[] = [];
  const answer = <T>(id: string, def: T | undefined): T => {
    asked.push(id);
    if (Object.hasOwn(answers, id)) return answers[id] as T;
    if (def !== undefined) return def;
    throw new Error(`scripted prompter: no answer for question "${id}" and it has no default`);
  };
  return {
    asked,
    select: async (q) => {
      const v = answer(q.id, q.default ?? q.choices[0]?.value);
      if (!q.choices.some((c) => c.value === v)) {
        throw new Error(`scripted prompter: ${JSON.stringify(v)} is not a choice of "${q.id}"`);
      }
      return v;
    },
    input: async (q) => answer(q.id, q.default),
    number: async (q) => answer(q.id, q.default),
    confirm: async (q) => answer(q.id, q.default),
  };
}
