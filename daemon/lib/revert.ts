// A revert stack for multi-step host changes: register the undo of each step; on failure run
// them all (newest first), on success drop them.

export type Undo = () => Promise<void> | void;

export interface Reverter {
  add(undo: Undo): void;
  /** Run every registered undo, newest first; collects failures instead of stopping at the first. */
  fail(): Promise<Error[]>;
  /** Forget the undos: the change is committed. */
  success(): void;
}

export function createReverter(): Reverter {
  let undos: Undo[] = [];
  return {
    add(undo) {
      undos.push(undo);
    },
    async fail() {
      const errors: Error[] = [];
      const todo = undos.reverse();
      undos = [];
      for (const undo of todo) {
        try {
          await undo();
        } catch (e) {
          errors.push(e instanceof Error ? e : new Error(String(e)));
        }
      }
      return errors;
    },
    success() {
      undos = [];
    },
  };
}
