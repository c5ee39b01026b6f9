// JSON Schema (draft 2020-12, as schemars writes statemachines/schemas/) to the draft 4
// that API Gateway models speak. A model cannot point into itself with `$ref` (API
// Gateway resolves a `$ref` only to another model's URL), so every `#/$defs/X` (or
// `#/definitions/X`) is inlined; keywords draft 4 does not know are rewritten where
// draft 4 has an equivalent (`const`, numeric `exclusiveMinimum`/`exclusiveMaximum`)
// and dropped where it has none and they do not constrain (annotations such as
// `examples`, `format` names draft 4 does not define). A keyword that constrains and
// has no draft 4 form is an error: a model must not silently accept what the schema
// rejects.

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

/** Keywords draft 4 validates, plus its annotations. */
const DRAFT4_KEYWORDS = new Set([
  'id', 'title', 'description', 'default', 'type', 'enum',
  'multipleOf', 'maximum', 'exclusiveMaximum', 'minimum', 'exclusiveMinimum',
  'maxLength', 'minLength', 'pattern',
  'items', 'additionalItems', 'maxItems', 'minItems', 'uniqueItems',
  'maxProperties', 'minProperties', 'required', 'properties', 'patternProperties',
  'additionalProperties', 'dependencies',
  'allOf', 'anyOf', 'oneOf', 'not', 'format',
]);

/** Annotations of later drafts: dropping them changes nothing a validator decides. */
const DROPPED_ANNOTATIONS = new Set([
  '$schema', '$id', '$comment', '$defs', 'definitions', '$anchor',
  'examples', 'deprecated', 'readOnly', 'writeOnly', 'contentEncoding', 'contentMediaType',
]);

/** The formats draft 4 defines; others (schemars' `int64`, `uint32`, ...) are dropped. */
const DRAFT4_FORMATS = new Set(['date-time', 'email', 'hostname', 'ipv4', 'ipv6', 'uri']);

function isObject(v: Json | undefined): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Converts `schema` to a self-contained draft 4 schema (without `$schema`: the caller
 * says which draft the model is). Throws on a `$ref` it cannot inline (external, or
 * recursive) and on a constraining keyword draft 4 cannot express.
 */
export function toDraft4(schema: Json): JsonObject {
  if (!isObject(schema)) {
    throw new Error('toDraft4: the schema must be a JSON object');
  }
  const defs: JsonObject = {
    ...(isObject(schema.definitions) ? schema.definitions : {}),
    ...(isObject(schema.$defs) ? schema.$defs : {}),
  };
  const out = convert(schema, defs, [], '#');
  if (!isObject(out)) {
    throw new Error('toDraft4: the schema must convert to an object');
  }
  return out;
}

function convert(node: Json, defs: JsonObject, refStack: string[], at: string): Json {
  if (Array.isArray(node)) {
    return node.map((v, i) => convert(v, defs, refStack, `${at}/${i}`));
  }
  if (!isObject(node)) {
    return node;
  }
  if (typeof node.$ref === 'string') {
    const ref = node.$ref;
    const m = /^#\/(?:\$defs|definitions)\/([^/]+)$/.exec(ref);
    if (!m) {
      throw new Error(`toDraft4: cannot inline $ref "${ref}" at ${at}: only #/$defs/NAME is supported`);
    }
    const name = decodeURIComponent(m[1]).replace(/~1/g, '/').replace(/~0/g, '~');
    if (refStack.includes(name)) {
      throw new Error(`toDraft4: $ref "${ref}" at ${at} is recursive and cannot be inlined`);
    }
    const target = defs[name];
    if (target === undefined) {
      throw new Error(`toDraft4: $ref "${ref}" at ${at} names no definition`);
    }
    // Siblings of $ref (2020-12 allows them) apply together with the target.
    const siblings = Object.fromEntries(Object.entries(node).filter(([k]) => k !== '$ref'));
    const inlined = convert(target, defs, [...refStack, name], `${at}(${ref})`);
    if (Object.keys(siblings).length === 0) {
      return inlined;
    }
    return { allOf: [inlined, convert(siblings, defs, refStack, at)] };
  }
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(node)) {
    if (DROPPED_ANNOTATIONS.has(key)) {
      continue;
    }
    switch (key) {
      case 'const':
        out.enum = [value];
        continue;
      case 'exclusiveMinimum':
      case 'exclusiveMaximum': {
        if (typeof value === 'boolean') {
          out[key] = value; // already draft 4
          continue;
        }
        if (typeof value !== 'number') {
          throw new Error(`toDraft4: ${key} at ${at} must be a number`);
        }
        const bound = key === 'exclusiveMinimum' ? 'minimum' : 'maximum';
        const other = node[bound];
        // Both given: the tighter bound wins (an equal inclusive one is looser).
        const tighter =
          typeof other !== 'number' ||
          (key === 'exclusiveMinimum' ? value >= other : value <= other);
        if (tighter) {
          out[bound] = value;
          out[key] = true;
        }
        continue;
      }
      case 'minimum':
      case 'maximum': {
        const exclusive = key === 'minimum' ? node.exclusiveMinimum : node.exclusiveMaximum;
        if (typeof exclusive === 'number') {
          const tighter = key === 'minimum' ? exclusive >= (value as number) : exclusive <= (value as number);
          if (tighter) {
            continue; // the exclusive bound, converted above or below, decides
          }
        }
        out[key] = value;
        continue;
      }
      case 'format':
        if (typeof value === 'string' && DRAFT4_FORMATS.has(value)) {
          out.format = value;
        }
        continue;
      case 'properties':
      case 'patternProperties': {
        if (!isObject(value)) {
          throw new Error(`toDraft4: ${key} at ${at} must be an object`);
        }
        out[key] = Object.fromEntries(
          Object.entries(value).map(([k, v]) => [k, convert(v, defs, refStack, `${at}/${key}/${k}`)]),
        );
        continue;
      }
      case 'enum':
      case 'required':
      case 'type':
      case 'default':
      case 'title':
      case 'description':
        out[key] = value;
        continue;
      default:
        if (!DRAFT4_KEYWORDS.has(key)) {
          throw new Error(`toDraft4: keyword "${key}" at ${at} has no draft 4 equivalent`);
        }
        out[key] = convert(value, defs, refStack, `${at}/${key}`);
    }
  }
  // Draft 4 requires `required` to be non-empty.
  if (Array.isArray(out.required) && out.required.length === 0) {
    delete out.required;
  }
  return out;
}
