// Shared by the tests: stand-in Lambda zips (the real ones take minutes to build) and
// the synthesised stack.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Template } from 'aws-cdk-lib/assertions';
import { buildApp } from '../lib/app';
import type { OmsStack } from '../lib/oms-stack';

/** The order saga's ten activities, as the issue names them. */
export const SAGA_BINARIES = [
  'cancel-shipment',
  'charge-payment',
  'pick-shipment',
  'place-order',
  'record-order-status',
  'refund-payment',
  'release-inventory',
  'reserve-inventory',
  'restock-shipment',
  'ship-shipment',
];

/** The amendments' six activities (activities/src/amend.rs, docs/saga.md "Amending"). */
export const AMEND_BINARIES = [
  'abandon-amendment',
  'apply-amendment',
  'charge-amendment',
  'refund-amendment',
  'release-amendment',
  'reserve-amendment',
];

/** Every activity function the stack must deploy: exactly these, sorted. */
export const EXPECTED_BINARIES = [...SAGA_BINARIES, ...AMEND_BINARIES].sort();

/** The compensations (docs/saga.md): never caught, so their failure fails the execution. */
export const COMPENSATIONS = ['CancelShipment', 'RefundPayment', 'ReleaseInventory', 'RestockShipment'];
/** The amendments' compensations (docs/saga.md "Amending"). */
export const AMEND_COMPENSATIONS = ['RefundAmendment', 'ReleaseAmendment'];

/** An empty zip archive (just the end-of-central-directory record) whose comment is `comment`. */
export function emptyZip(comment: string): Buffer {
  const text = Buffer.from(comment, 'utf8');
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(text.length, 20);
  return Buffer.concat([eocd, text]);
}

let zipDir: string | undefined;

/**
 * A temporary folder holding `<binary>/bootstrap.zip` for each activity: an empty zip
 * whose comment names the binary, so that each function's asset is distinct.
 */
export function standInZipDir(): string {
  if (zipDir === undefined) {
    zipDir = fs.mkdtempSync(path.join(os.tmpdir(), 'oms-cdk-zips-'));
    for (const binary of EXPECTED_BINARIES) {
      fs.mkdirSync(path.join(zipDir, binary));
      fs.writeFileSync(path.join(zipDir, binary, 'bootstrap.zip'), emptyZip(`oms stand-in ${binary}`));
    }
    process.on('exit', () => fs.rmSync(zipDir!, { recursive: true, force: true }));
  }
  return zipDir;
}

let outRoot: string | undefined;

/** A fresh cloud assembly folder, removed when the test process ends. */
function outdir(): string {
  if (outRoot === undefined) {
    outRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'oms-cdk-out-'));
    process.on('exit', () => fs.rmSync(outRoot!, { recursive: true, force: true }));
  }
  return fs.mkdtempSync(path.join(outRoot, 'app-'));
}

/** The app with the stand-in zips (and any extra context), without cdk-nag unless asked. */
export function build(context: Record<string, unknown> = {}, nag = false) {
  return buildApp({ context: { lambdaZipDir: standInZipDir(), ...context }, nag, outdir: outdir() });
}

const cache = new Map<string, { stack: OmsStack; template: Template }>();

/** The stack and its template for `context`, synthesised once per context. */
export function synth(context: Record<string, unknown> = {}): { stack: OmsStack; template: Template } {
  const key = JSON.stringify(context);
  let hit = cache.get(key);
  if (!hit) {
    const { stack } = build(context);
    hit = { stack, template: Template.fromStack(stack) };
    cache.set(key, hit);
  }
  return hit;
}

/** The logical id of a construct's CloudFormation resource. */
export function logicalId(stack: OmsStack, construct: { node: { defaultChild?: unknown } }): string {
  return stack.getLogicalId(construct.node.defaultChild as never);
}

type Resource = { Type: string; Properties?: any; DeletionPolicy?: string; UpdateReplacePolicy?: string; DependsOn?: string[] };

/** Every resource of `type`, by logical id. */
export function resources(template: Template, type: string): Record<string, Resource> {
  return template.findResources(type) as Record<string, Resource>;
}

/** The statements of every AWS::IAM::Policy attached to the role `roleLogicalId`. */
export function roleStatements(template: Template, roleLogicalId: string): any[] {
  return Object.values(resources(template, 'AWS::IAM::Policy'))
    .filter((p) => (p.Properties.Roles as any[]).some((r) => r.Ref === roleLogicalId))
    .flatMap((p) => p.Properties.PolicyDocument.Statement as any[]);
}

/** A statement's actions as a sorted list. */
export function actions(statement: any): string[] {
  return [statement.Action].flat().sort();
}

/** A statement's resources as a list. */
export function resourcesOf(statement: any): any[] {
  return [statement.Resource].flat();
}
