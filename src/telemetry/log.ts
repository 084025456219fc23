// The node's logs: one JSON object a line on stderr (pino), with the node's id, a level,
// a message, and the same ERR_DMSC_* codes the API answers with (as `code`).
import { pino, type Logger } from 'pino';
import { DmscTypeError } from '../errors.js';

export type LogSink = (event: Record<string, unknown>) => void;

export function createLogger(node: string, level = process.env['DMSC_LOG_LEVEL'] ?? 'info'): Logger {
  if (!Object.hasOwn(pino.levels.values, level) && level !== 'silent') {
    throw new DmscTypeError('ERR_DMSC_INVALID_CONFIG', `DMSC_LOG_LEVEL is one of ${Object.keys(pino.levels.values).join(', ')} or silent, not ${JSON.stringify(level)}`);
  }
  // Synchronous: what a node says just before it dies is not lost.
  return pino({ level, base: { node }, timestamp: pino.stdTimeFunctions.isoTime, formatters: { level: (label) => ({ level: label }) } }, pino.destination({ fd: 2, sync: true }));
}

/**
 * The `{ msg, … }` events the node's parts report, as log lines: one that carries an
 * error code (`error: 'ERR_DMSC_…'` or `code`) is a warning, under `code`.
 */
export function logSink(logger: Logger): LogSink {
  return (event) => {
    const { msg, error, ...rest } = event;
    const isCode = typeof error === 'string' && error.startsWith('ERR_DMSC_');
    const fields = isCode ? { ...rest, code: error } : error === undefined ? rest : { ...rest, error };
    const text = typeof msg === 'string' ? msg : 'event';
    if (isCode || typeof fields['code'] === 'string') logger.warn(fields, text);
    else logger.info(fields, text);
  };
}
