/**
 * `vrouter test`: runs scenario directories in parallel (worker threads, up
 * to the number of cores), prints one line per scenario in the order given
 * and `N passed, N failed`, and writes JUnit XML and a JSON report.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { isScenarioDir, ScenarioResult } from './scenario';

export interface SuiteScenario {
  /** The argument it was found under: the JUnit testsuite. */
  suite: string;
  dir: string;
}

/** Each argument is a scenario directory or a directory of them (one level down, sorted). */
export function findScenarios(args: string[]): SuiteScenario[] {
  return args.flatMap((arg) => {
    if (!fs.existsSync(arg) || !fs.statSync(arg).isDirectory()) throw new Error(`${arg}: no such directory`);
    if (isScenarioDir(arg)) return [{ suite: path.basename(path.dirname(path.resolve(arg))), dir: arg }];
    const found = fs
      .readdirSync(arg, { withFileTypes: true })
      .filter((entry) => entry.isDirectory() && isScenarioDir(path.join(arg, entry.name)))
      .map((entry) => entry.name)
      .sort()
      .map((name) => ({ suite: path.basename(path.resolve(arg)), dir: path.join(arg, name) }));
    if (found.length === 0) throw new Error(`${arg}: neither a scenario (state.yaml or scenario.yaml) nor a directory of scenarios`);
    return found;
  });
}

/** Runs the scenarios on `jobs` worker threads; `onResult` sees each result in the order of `scenarios`. */
export async function runSuite(
  scenarios: SuiteScenario[],
  options: { jobs: number; update: boolean; onResult: (result: ScenarioResult, index: number) => void },
): Promise<ScenarioResult[]> {
  const results: Array<ScenarioResult | undefined> = new Array(scenarios.length);
  let nextJob = 0;
  let nextReported = 0;
  const report = () => {
    while (nextReported < results.length && results[nextReported] !== undefined) {
      options.onResult(results[nextReported]!, nextReported);
      nextReported++;
    }
  };
  const workerFile = path.join(__dirname, 'scenario-worker.js');
  const runWorker = () =>
    new Promise<void>((resolve, reject) => {
      const worker = new Worker(workerFile);
      let current = -1;
      const take = () => {
        if (nextJob >= scenarios.length) {
          void worker.terminate().then(() => resolve());
          return;
        }
        current = nextJob++;
        worker.postMessage({ dir: scenarios[current].dir, update: options.update });
      };
      worker.on('message', (result: ScenarioResult) => {
        results[current] = result;
        report();
        take();
      });
      worker.on('error', reject);
      take();
    });
  await Promise.all(Array.from({ length: Math.max(1, Math.min(options.jobs, scenarios.length)) }, runWorker));
  return results as ScenarioResult[];
}

/** The line `vrouter test` prints for a scenario, then its failures indented. */
export function formatResult(result: ScenarioResult): string {
  const mark = result.status === 'passed' ? 'ok  ' : result.status === 'failed' ? 'FAIL' : 'ERR ';
  const lines = [`${mark} ${result.dir} (${result.seconds.toFixed(2)} s)`];
  for (const failure of result.failures) lines.push(`     ${failure}`);
  return lines.join('\n');
}

export function summaryLine(results: ScenarioResult[]): string {
  const passed = results.filter((result) => result.status === 'passed').length;
  return `${passed} passed, ${results.length - passed} failed`;
}

/** Text as XML character data or an attribute value: escaped, and without the characters XML 1.0 cannot hold. */
function xmlText(text: string): string {
  return text
    .replace(/[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu, '\uFFFD')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;');
}

/**
 * JUnit XML as Jenkins, GitLab and GitHub's test reporters read it: a
 * testsuite per suite directory, a testcase per scenario; a failed
 * scenario's testcase has a <failure> holding its diff, one that could not
 * run an <error>.
 */
export function junitXml(scenarios: SuiteScenario[], results: ScenarioResult[], started: Date): string {
  const suites = new Map<string, number[]>();
  scenarios.forEach((scenario, i) => {
    if (!suites.has(scenario.suite)) suites.set(scenario.suite, []);
    suites.get(scenario.suite)!.push(i);
  });
  const count = (indices: number[], status: ScenarioResult['status']) => indices.filter((i) => results[i].status === status).length;
  const time = (indices: number[]) => indices.reduce((sum, i) => sum + results[i].seconds, 0).toFixed(3);
  const all = results.map((_, i) => i);
  const lines = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="vrouter test" tests="${results.length}" failures="${count(all, 'failed')}" errors="${count(all, 'error')}" time="${time(all)}">`,
  ];
  let id = 0;
  for (const [suite, indices] of suites) {
    lines.push(
      `  <testsuite name="${xmlText(suite)}" id="${id++}" tests="${indices.length}" failures="${count(indices, 'failed')}" errors="${count(indices, 'error')}" skipped="0"` +
        ` time="${time(indices)}" timestamp="${started.toISOString().replace(/\.\d+Z$/, '')}" hostname="${xmlText(os.hostname())}">`,
    );
    for (const i of indices) {
      const result = results[i];
      const open = `    <testcase name="${xmlText(result.name)}" classname="${xmlText(suite)}" file="${xmlText(result.dir)}" time="${result.seconds.toFixed(3)}"`;
      if (result.status === 'passed') {
        lines.push(`${open}/>`);
        continue;
      }
      const element = result.status === 'failed' ? 'failure' : 'error';
      const message = result.failures[0] ?? result.status;
      lines.push(`${open}>`);
      lines.push(`      <${element} type="${result.status === 'failed' ? 'ReplayMismatch' : 'ScenarioError'}" message="${xmlText(message)}">${xmlText(result.failures.join('\n'))}</${element}>`);
      lines.push('    </testcase>');
    }
    lines.push('  </testsuite>');
  }
  lines.push('</testsuites>');
  return lines.join('\n') + '\n';
}

/** The machine-readable report of `--json`. */
export function jsonReport(results: ScenarioResult[]): string {
  const passed = results.filter((result) => result.status === 'passed').length;
  return JSON.stringify({ passed, failed: results.length - passed, scenarios: results }, null, 2) + '\n';
}
