// What the stack reads from the repository: the activities (one Lambda binary each in
// activities/src/bin/), which state machine calls each and which of them are
// compensations (statemachines/schemas/activities.json), and the state machines'
// definitions (the order saga's, the amendments') with their `${...}` placeholders.

import * as fs from 'node:fs';
import * as path from 'node:path';

/** The repository's root (infra-cdk/..). */
export const REPO_ROOT = path.resolve(__dirname, '..', '..');

export interface Activity {
  /** The binary's name, as cargo-lambda names the zip's folder: `place-order`. */
  readonly binary: string;
  /** The activity's name, as the saga and activities.json name it: `PlaceOrder`. */
  readonly name: string;
  /** The placeholder the definition uses for its function: `PlaceOrderFunctionArn`. */
  readonly placeholder: string;
  /** The forward step it undoes (activities.json `compensates`), if it is a compensation. */
  readonly compensates: string | null;
  /** The state machine that calls it (activities.json `machine`): `order-saga`, `order-amend`. */
  readonly machine: string;
}

/** The state machines whose activities activities.json lists, by its `machine` name. */
export const MACHINES = ['order-saga', 'order-amend'] as const;
export type MachineId = (typeof MACHINES)[number];
/**
 * Every definition the stack deploys: the machines above and the order saga's Express
 * child, `order-prepare`, which calls some of the order saga's activities (its forward
 * steps that do not wait) and which the saga's Prepare state starts.
 */
export const DEFINITIONS = [...MACHINES, 'order-prepare'] as const;
export type DefinitionId = (typeof DEFINITIONS)[number];
/** The placeholder the order saga's definition names its child with. */
export const CHILD_PLACEHOLDER = 'OrderPrepareStateMachineArn';

/** The activities.json machine whose activities definition `id` calls. */
export function activitiesOf(id: DefinitionId): MachineId {
  return id === 'order-prepare' ? 'order-saga' : id;
}

/** `place-order` → `PlaceOrder`. */
export function activityName(binary: string): string {
  if (!/^[a-z][a-z0-9]*(-[a-z0-9]+)*$/.test(binary)) {
    throw new Error(`activity binary name "${binary}" is not kebab-case`);
  }
  return binary
    .split('-')
    .map((w) => w[0].toUpperCase() + w.slice(1))
    .join('');
}

/** The activities, one per activities/src/bin/*.rs, sorted by binary name. */
export function readActivities(root: string = REPO_ROOT): Activity[] {
  const binDir = path.join(root, 'activities', 'src', 'bin');
  const binaries = fs
    .readdirSync(binDir)
    .filter((f) => f.endsWith('.rs'))
    .map((f) => f.slice(0, -'.rs'.length))
    .sort();
  if (binaries.length === 0) {
    throw new Error(`no activity binaries in ${binDir}`);
  }
  const manifestPath = path.join(root, 'statemachines', 'schemas', 'activities.json');
  const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8')) as {
    activities: { name: string; machine: string; compensates: string | null }[];
  };
  const entries = new Map(manifest.activities.map((a) => [a.name, a]));
  return binaries.map((binary) => {
    const name = activityName(binary);
    const entry = entries.get(name);
    if (entry === undefined) {
      throw new Error(`activities/src/bin/${binary}.rs: ${manifestPath} has no activity ${name}`);
    }
    if (!(MACHINES as readonly string[]).includes(entry.machine)) {
      throw new Error(`${manifestPath}: ${name}'s machine "${entry.machine}" is none of ${MACHINES.join(', ')}`);
    }
    return { binary, name, placeholder: `${name}FunctionArn`, compensates: entry.compensates, machine: entry.machine };
  });
}

/** The definition file of state machine `machine`, relative to the repository. */
export function definitionFile(machine: DefinitionId): string {
  return path.join('statemachines', `${machine}.asl.json`);
}

/** State machine `machine`'s definition, as the repository holds it. */
export function readDefinition(machine: DefinitionId, root: string = REPO_ROOT): string {
  return fs.readFileSync(path.join(root, definitionFile(machine)), 'utf8');
}

/** The order saga's definition, as the repository holds it. */
export function readSagaDefinition(root: string = REPO_ROOT): string {
  return readDefinition('order-saga', root);
}

/** Every `${Name}` placeholder in a definition, once each, in order of appearance. */
export function placeholders(definition: string): string[] {
  const names: string[] = [];
  for (const m of definition.matchAll(/\$\{([^}]*)\}/g)) {
    if (!names.includes(m[1])) {
      names.push(m[1]);
    }
  }
  return names;
}

/**
 * The definitionSubstitutions for `definition`: each placeholder mapped to its
 * activity's function ARN. Throws, naming them, if a placeholder has no function: the
 * machine would otherwise be created with a literal `${...}` where a function ARN
 * belongs and fail only when an order reaches that state.
 */
export function substitutions(
  definition: string,
  functionArns: ReadonlyMap<string, string>,
  file: string = definitionFile('order-saga'),
): Record<string, string> {
  const out: Record<string, string> = {};
  const missing: string[] = [];
  for (const name of placeholders(definition)) {
    const arn = functionArns.get(name);
    if (arn === undefined) {
      missing.push('${' + name + '}');
    } else {
      out[name] = arn;
    }
  }
  if (missing.length > 0) {
    throw new Error(
      `${file} has ${missing.join(', ')} but no activity function for ` +
        `${missing.length === 1 ? 'it' : 'them'} (the functions are ${[...functionArns.keys()].join(', ')}; ` +
        'each comes from a binary in activities/src/bin/: place-order gives ${PlaceOrderFunctionArn})',
    );
  }
  return out;
}
