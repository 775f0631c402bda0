/**
 * Installs the plugin where runtimes look for it (CNI_PATH, /opt/cni/bin by
 * default): a launcher named `vrouter-cni` that runs this checkout's compiled
 * plugin with this Node.js, so the runtime needs neither PATH nor a package.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export const DEFAULT_CNI_BIN_DIR = '/opt/cni/bin';
export const PLUGIN_NAME = 'vrouter-cni';

/** The launcher's text: an absolute interpreter and an absolute module path. */
export function launcher(): string {
  const entry = path.resolve(__dirname, 'main.js');
  return `#!${process.execPath}\n'use strict';\n// Installed by \`vrouter cni install\`.\nrequire(${JSON.stringify(entry)}).main();\n`;
}

/** Writes <dir>/vrouter-cni atomically (a runtime may be executing the old one); returns its path. */
export function installPlugin(dir = DEFAULT_CNI_BIN_DIR): string {
  fs.mkdirSync(dir, { recursive: true });
  const target = path.join(dir, PLUGIN_NAME);
  const temporary = `${target}.${process.pid}.tmp`;
  fs.writeFileSync(temporary, launcher(), { mode: 0o755 });
  fs.renameSync(temporary, target);
  return target;
}
