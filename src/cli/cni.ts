/** `vrouter cni install [--dir <dir>]`: puts the vrouter-cni plugin where the container runtime finds it. */
import { Command } from 'commander';
import { DEFAULT_CNI_BIN_DIR, installPlugin } from '../cni/install';

export function cniCommand(): Command {
  const cni = new Command('cni').description('the CNI plugin (vrouter-cni)');
  cni
    .command('install')
    .description('install the vrouter-cni plugin into a CNI bin directory')
    .option('--dir <dir>', 'CNI bin directory', DEFAULT_CNI_BIN_DIR)
    .action((options: { dir: string }) => {
      process.stdout.write(`${installPlugin(options.dir)}\n`);
    });
  return cni;
}
