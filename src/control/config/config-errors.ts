/**
 * How configuration files (the dataplane state file, the control node's
 * network configuration) are read and how their errors read: always
 *
 *   <file>: <JSON-pointer path>: <what is wrong> (value: <JSON of the value>)
 *
 * or `<file>: line L, column C: <message>` for a YAML syntax error, so an
 * operator finds the line to fix without reading code.
 */
import type { ErrorObject } from 'ajv';
import type * as Yaml from 'yaml';

/** Values longer than this are cut in messages: a whole section would drown the error. */
const MAX_VALUE_TEXT = 120;

export function formatConfigError(file: string, path: string, problem: string, value: unknown): string {
  let valueText = JSON.stringify(value) ?? 'undefined';
  if (valueText.length > MAX_VALUE_TEXT) valueText = `${valueText.slice(0, MAX_VALUE_TEXT)}...`;
  return `${file}: ${path || '/'}: ${problem} (value: ${valueText})`;
}

function escapePointerToken(token: string): string {
  return token.replace(/~/g, '~0').replace(/\//g, '~1');
}

/** Turns ajv's first error into the common form, pointing at the field itself where ajv points at its parent. */
export function describeSchemaError(error: ErrorObject, file: string): string {
  const path = error.instancePath;
  switch (error.keyword) {
    case 'additionalProperties': {
      const field: string = error.params.additionalProperty;
      const known = Object.keys(error.parentSchema?.properties ?? {}).join(', ');
      const value = (error.data as Record<string, unknown>)[field];
      return formatConfigError(file, `${path}/${escapePointerToken(field)}`, `unknown field, expected one of: ${known}`, value);
    }
    case 'required':
      return formatConfigError(file, path, `missing required field "${error.params.missingProperty}"`, error.data);
    case 'discriminator': {
      const tag: string = error.params.tag;
      const branches: Array<{ properties: Record<string, { const: string }> }> = error.parentSchema?.oneOf ?? [];
      const kinds = branches.map((branch) => branch.properties[tag].const).join(', ');
      return formatConfigError(file, `${path}/${escapePointerToken(tag)}`, `must be one of: ${kinds}`, error.params.tagValue);
    }
    case 'enum':
      return formatConfigError(file, path, `must be one of: ${(error.params.allowedValues as unknown[]).join(', ')}`, error.data);
    case 'type':
      return formatConfigError(file, path, `must be ${String(error.params.type).split(',').join(' or ')}`, error.data);
    default:
      return formatConfigError(file, path, error.message ?? 'is invalid', error.data);
  }
}

/** Parses YAML (which includes JSON) into plain data; a syntax error becomes `fail(message)` naming the line. */
export function parseYamlText(text: string, file: string, fail: (message: string) => Error): unknown {
  // Loaded on first use: a restarting daemon starts its dataplane worker before it reads any file.
  const { LineCounter, parseDocument } = require('yaml') as typeof Yaml;
  const lineCounter = new LineCounter();
  const document = parseDocument(text, { lineCounter, prettyErrors: false });
  const [error] = document.errors;
  if (error) {
    const { line, col } = lineCounter.linePos(error.pos[0]);
    throw fail(`${file}: line ${line}, column ${col}: ${error.message}`);
  }
  return document.toJS();
}
