// The JSON Schema → draft 4 conversion behind the Orders API's request model, and the
// model itself checked with a draft 4 validator (ajv-draft-04).

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import Ajv04 from 'ajv-draft-04';
import { toDraft4 } from '../lib/draft4';
import { resources, synth } from './helpers';

test('toDraft4 inlines $defs references and drops $schema and $defs', () => {
  const out = toDraft4({
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    type: 'object',
    properties: { a: { $ref: '#/$defs/A' }, list: { type: 'array', items: { $ref: '#/$defs/A' } } },
    $defs: { A: { type: 'object', properties: { b: { $ref: '#/$defs/B' } } }, B: { type: 'string' } },
  });
  assert.deepEqual(out, {
    type: 'object',
    properties: {
      a: { type: 'object', properties: { b: { type: 'string' } } },
      list: { type: 'array', items: { type: 'object', properties: { b: { type: 'string' } } } },
    },
  });
  assert.ok(!JSON.stringify(out).includes('$ref'));
});

test('toDraft4 rewrites const and numeric exclusive bounds into their draft 4 forms', () => {
  assert.deepEqual(toDraft4({ const: 'x' }), { enum: ['x'] });
  assert.deepEqual(toDraft4({ type: 'number', exclusiveMinimum: 0 }), {
    type: 'number',
    minimum: 0,
    exclusiveMinimum: true,
  });
  // The tighter of an inclusive and an exclusive bound decides.
  assert.deepEqual(toDraft4({ minimum: 5, exclusiveMinimum: 0 }), { minimum: 5 });
  assert.deepEqual(toDraft4({ exclusiveMaximum: 10, maximum: 20 }), { maximum: 10, exclusiveMaximum: true });
});

test('toDraft4 drops annotations and formats draft 4 does not know, keeps the ones it does', () => {
  assert.deepEqual(
    toDraft4({ type: 'integer', format: 'int64', examples: [1], $comment: 'c', deprecated: true }),
    { type: 'integer' },
  );
  assert.deepEqual(toDraft4({ type: 'string', format: 'date-time' }), { type: 'string', format: 'date-time' });
});

test('toDraft4 refuses what it cannot express rather than loosen the schema', () => {
  assert.throws(() => toDraft4({ $ref: 'https://example.com/other.json' }), /cannot inline \$ref/);
  assert.throws(() => toDraft4({ $ref: '#/$defs/Missing', $defs: {} }), /names no definition/);
  assert.throws(
    () => toDraft4({ $ref: '#/$defs/Node', $defs: { Node: { properties: { next: { $ref: '#/$defs/Node' } } } } }),
    /recursive/,
  );
  assert.throws(() => toDraft4({ type: 'object', propertyNames: { pattern: '^a' } }), /"propertyNames".*no draft 4/);
  assert.throws(() => toDraft4({ if: { type: 'string' }, then: { minLength: 1 } }), /"if"/);
});

/** The request model as the template gives it to API Gateway. */
function modelSchema(): Record<string, unknown> {
  const models = Object.values(resources(synth().template, 'AWS::ApiGateway::Model'));
  assert.equal(models.length, 1);
  return models[0].Properties.Schema;
}

function validator() {
  const ajv = new Ajv04({ strict: true, allErrors: true });
  return ajv.compile(modelSchema());
}

const ORDER = {
  order_id: 'o-1',
  customer_id: 'c-1',
  lines: [{ sku: 'TSHIRT-BLK-M', quantity: 2 }],
  payment: { token: 'tok_visa' },
  ship_to: { name: "Ada O'Lovelace", line1: '1 Main St', city: 'Boston', postal_code: '02101', country: 'US' },
};

const METHOD = `pm_${'0a'.repeat(16)}`;

test('the request model is valid draft 4 (ajv-draft-04, strict) and has no $ref left', () => {
  const schema = modelSchema();
  assert.equal(schema.$schema, 'http://json-schema.org/draft-04/schema#');
  assert.ok(!JSON.stringify(schema).includes('$ref'));
  assert.ok(!JSON.stringify(schema).includes('$defs'));
  validator(); // throws on a keyword draft 4 does not know, in strict mode
});

test('the request model accepts an order, with or without the saga options', () => {
  const validate = validator();
  assert.ok(validate(ORDER), JSON.stringify(validate.errors));
  const options = { pick_timeout_seconds: 600, pick_heartbeat_seconds: 60 };
  assert.ok(validate({ ...ORDER, options }), JSON.stringify(validate.errors));
  // Or paid with the payment-method reference the gateway gave for the token.
  assert.ok(validate({ ...ORDER, payment: { method: METHOD } }), JSON.stringify(validate.errors));
});

test('the request model requires order_id: it becomes the execution name', () => {
  const validate = validator();
  const { order_id: _omitted, ...withoutId } = ORDER;
  assert.equal(validate(withoutId), false);
  assert.ok(validate.errors!.some((e) => e.keyword === 'required' && JSON.stringify(e.params).includes('order_id')));
  // An execution name allows no spaces or slashes; the pattern keeps the name legal.
  assert.equal(validate({ ...ORDER, order_id: 'a b/c' }), false);
  assert.equal(validate({ ...ORDER, order_id: 'x'.repeat(65) }), false);
});

test('the request model rejects known-bad orders', () => {
  const validate = validator();
  const bad: [string, unknown][] = [
    ['quantity 0', { ...ORDER, lines: [{ sku: 'A', quantity: 0 }] }],
    ['quantity not an integer', { ...ORDER, lines: [{ sku: 'A', quantity: 1.5 }] }],
    ['no lines', { ...ORDER, lines: [] }],
    ['21 lines', { ...ORDER, lines: Array.from({ length: 21 }, () => ({ sku: 'A', quantity: 1 })) }],
    ['bad token', { ...ORDER, payment: { token: 'visa' } }],
    ['token and method', { ...ORDER, payment: { token: 'tok_visa', method: METHOD } }],
    ['neither token nor method', { ...ORDER, payment: {} }],
    ['bad method', { ...ORDER, payment: { method: 'pm_visa' } }],
    ['address without city', { ...ORDER, ship_to: { ...ORDER.ship_to, city: undefined } }],
    ['unknown field', { ...ORDER, price_cents: 1 }],
    ['unknown option', { ...ORDER, options: { pick_timeout: 5 } }],
    ['zero timeout', { ...ORDER, options: { pick_timeout_seconds: 0, pick_heartbeat_seconds: 1 } }],
    // ApplyDefaults merges shallowly: a partial object would leave the saga without one.
    ['partial options', { ...ORDER, options: { pick_timeout_seconds: 5 } }],
    ['timeout past a year', { ...ORDER, options: { pick_timeout_seconds: 1e30, pick_heartbeat_seconds: 1 } }],
    ['options not an object', { ...ORDER, options: 'x' }],
  ];
  for (const [why, order] of bad) {
    assert.equal(validate(JSON.parse(JSON.stringify(order))), false, `accepted: ${why}`);
  }
});
