/** A worker thread of `vrouter test`: runs the scenario directories it is sent, one at a time. */
import { parentPort } from 'node:worker_threads';
import { runScenarioDir } from './scenario';

parentPort!.on('message', (job: { dir: string; update: boolean }) => {
  parentPort!.postMessage(runScenarioDir(job.dir, { update: job.update }));
});
