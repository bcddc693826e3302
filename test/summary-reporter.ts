// Prints one plain closing line ("N passed, N failed, N skipped") after vitest's own report, so CI and
// people read the same count; skipped and failed tests are listed by name so neither hides in a long log.
import type { Reporter, TestModule } from 'vitest/node';

export default class SummaryReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    const skippedNames: string[] = [];
    const failedNames: string[] = [];
    for (const m of modules) {
      for (const t of m.children.allTests()) {
        const state = t.result().state;
        if (state === 'passed') passed++;
        else if (state === 'failed') {
          failed++;
          failedNames.push(`${m.moduleId.replace(process.cwd() + '/', '')} > ${t.fullName}`);
        }
        else if (state === 'skipped') {
          skipped++;
          skippedNames.push(`${m.moduleId.replace(process.cwd() + '/', '')} > ${t.fullName}`);
        }
      }
      if (m.state() === 'failed' && !m.children.size) {
        failed++; // a file that failed to load counts
        failedNames.push(`${m.moduleId.replace(process.cwd() + '/', '')} (did not load)`);
      }
    }
    if (skippedNames.length) process.stdout.write(`skipped:\n${skippedNames.map((n) => `  - ${n}`).join('\n')}\n`);
    if (failedNames.length) process.stdout.write(`failed:\n${failedNames.map((n) => `  - ${n}`).join('\n')}\n`);
    process.stdout.write(`\nnodevirt: ${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  }
}
