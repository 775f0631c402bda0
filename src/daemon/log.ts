/**
 * Structured logs (level, component, message, fields) as JSON lines on
 * stderr, through pino. Events are logged once each (a port added, a
 * session up or down, a configuration error), never per packet.
 */
import pino from 'pino';

export type Logger = pino.Logger;

export function createLogger(level = process.env.VROUTER_LOG_LEVEL ?? 'info'): Logger {
  return pino(
    { level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime, formatters: { level: (label) => ({ level: label }) } },
    pino.destination(2),
  );
}
