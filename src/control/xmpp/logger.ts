/**
 * Where the control channel reports what happened to its sessions (opened,
 * closed and why, refused, reloaded). Two levels are enough: `warn` for
 * what an operator should look at, `info` for the rest.
 */
export interface Logger {
  info(message: string): void;
  warn(message: string): void;
}

export const silentLogger: Logger = { info() {}, warn() {} };

/** Timestamped lines on stderr, for the CLI. */
export const stderrLogger: Logger = {
  info: (message) => process.stderr.write(`${new Date().toISOString()} info ${message}\n`),
  warn: (message) => process.stderr.write(`${new Date().toISOString()} warn ${message}\n`),
};
