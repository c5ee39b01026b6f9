// cdk-nag's AWS Solutions checks over the whole app: nothing unacknowledged, every
// acknowledgement with its reason and still needed.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import { build } from './helpers';

const ACK = Validations.ACKNOWLEDGED_RULES_METADATA_KEY;

/** Every acknowledgement in the app: rule id → reason, and where. */
function acknowledgements(root: IConstruct): { id: string; reason: string; path: string }[] {
  return root.node.findAll().flatMap((c) =>
    c.node.metadata
      .filter((m) => m.type === ACK)
      .flatMap((m) =>
        Object.entries(m.data as Record<string, string>).map(([id, reason]) => ({
          id: id.replace(/^annotation::/i, ''),
          reason,
          path: c.node.path,
        })),
      ),
  );
}

function describe(violations: { ruleName: string; severity?: string; violatingResources: { constructPath?: string }[] }[]) {
  return violations
    .map((v) => `${v.severity} ${v.ruleName}: ${v.violatingResources.map((r) => r.constructPath).join(', ')}`)
    .join('\n');
}

test('synth with AwsSolutionsChecks as a validation plugin succeeds (no unacknowledged error)', () => {
  const { app } = build({}, true);
  app.synth(); // throws "Validation failed" on an unacknowledged error
});

test('AwsSolutionsChecks finds no unacknowledged error or warning', () => {
  const { app } = build();
  app.synth();
  const report = new AwsSolutionsChecks().validateScope(app);
  assert.equal(report.violations.length, 0, describe(report.violations));
  assert.equal(report.success, true);
});

test('every acknowledgement gives its reason, and each is still needed', () => {
  const { app } = build();
  app.synth();
  const acks = acknowledgements(app);
  assert.ok(acks.length > 0);
  for (const a of acks) {
    assert.match(a.id, /^AwsSolutions-/, `${a.path}: ${a.id}`);
    assert.ok(a.reason.trim().length >= 40, `${a.path}: ${a.id} has no real reason`);
  }
  // Take the acknowledgements away: exactly the acknowledged rules are found (which
  // also shows the check can fail).
  // (node.metadata is a copy; constructs keeps the entries in _metadata.)
  for (const c of app.node.findAll()) {
    const node = c.node as unknown as { _metadata?: { type: string }[] };
    if (node._metadata) {
      node._metadata = node._metadata.filter((m) => m.type !== ACK);
    }
  }
  assert.equal(acknowledgements(app).length, 0);
  const report = new AwsSolutionsChecks().validateScope(app);
  const found = new Set(report.violations.map((v) => v.ruleName));
  assert.deepEqual([...found].sort(), [...new Set(acks.map((a) => a.id))].sort(), describe(report.violations));
});

test('the acknowledged findings are exactly these', () => {
  const { app, stack } = build();
  const machine = stack.getLogicalId(stack.stateMachine.node.defaultChild as never);
  const amend = stack.getLogicalId(stack.amendMachine.node.defaultChild as never);
  const prepare = stack.getLogicalId(stack.prepareMachine.node.defaultChild as never);
  const byId = new Map<string, string[]>();
  for (const a of acknowledgements(app)) {
    byId.set(a.id, [...(byId.get(a.id) ?? []), a.path.replace(/^Oms\//, '')]);
  }
  const fnRoles = stack.activities.map((a) => `${a.name}Role`);
  assert.deepEqual(Object.fromEntries([...byId].map(([id, paths]) => [id, paths.sort()])), {
    'AwsSolutions-IAM5[Resource::*]': [...fnRoles, 'OrderSagaRole', 'OrderPrepareRole', 'OrderAmendRole', 'OrderEvents/RelayRole'].sort(),
    // The saga and its Express child log ERROR (docs/cost.md).
    'AwsSolutions-SF1': ['OrderPrepare', 'OrderSaga'],
    // The saga's role follows its child's executions (.sync:2).
    [`AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:<${prepare}.Name>:*]`]:
      ['OrderSagaRole'],
    [`AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:express:<${prepare}.Name>:*]`]:
      ['OrderSagaRole'],
    'AwsSolutions-IAM5[Action::kms:GenerateDataKey*]': ['OrderEvents/RelayRole'],
    'AwsSolutions-IAM5[Action::kms:ReEncrypt*]': ['OrderEvents/RelayRole'],
    'AwsSolutions-SQS3': ['OrderEvents/RelayFailures'],
    [`AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:<${machine}.Name>:*]`]:
      ['OperatorRole', 'OrdersApiRole', 'OrdersServiceRole'],
    // The amendments' executions: oms starts, reads and redrives them; the API does not.
    [`AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:<${amend}.Name>:*]`]:
      ['OperatorRole', 'OrdersServiceRole'],
    'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]': ['OrdersApi'],
    'AwsSolutions-APIG3': ['OrdersApi'],
    'AwsSolutions-COG4': ['OrdersApi'],
  });
});
