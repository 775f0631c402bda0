/** Parses `host:port` options; the error names the option and the value. */
export function parseHostPort(text: string, option: string): { host: string; port: number } {
  const at = text.lastIndexOf(':');
  const port = Number(text.slice(at + 1));
  if (at <= 0 || !Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`${option} ${text}: expected <host>:<port>`);
  return { host: text.slice(0, at), port };
}
