// Assertions on the synthesised `Oms` stack: every resource the deployment relies on,
// and the permissions between them.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Match } from 'aws-cdk-lib/assertions';
import { buildApp } from '../lib/app';
import { OPERATOR_EXECUTION_ACTIONS, OPERATOR_MACHINE_ACTIONS } from '../lib/oms-stack';
import { EVENT_SCHEMA_FILE } from '../lib/events';
import {
  CHILD_PLACEHOLDER,
  DEFINITIONS,
  MACHINES,
  REPO_ROOT,
  activityName,
  placeholders,
  readDefinition,
  readSagaDefinition,
  substitutions,
} from '../lib/saga';
import {
  AMEND_BINARIES,
  AMEND_COMPENSATIONS,
  COMPENSATIONS,
  EXPECTED_BINARIES,
  SAGA_BINARIES,
  actions,
  build,
  logicalId,
  resources,
  resourcesOf,
  roleStatements,
  standInZipDir,
  synth,
} from './helpers';

const { stack, template } = synth();
const keyId = logicalId(stack, stack.key);
const tableId = logicalId(stack, stack.table);
const machineId = logicalId(stack, stack.stateMachine);
const amendId = logicalId(stack, stack.amendMachine);
const prepareId = logicalId(stack, stack.prepareMachine);
/** The binaries of `all` whose function definition `machine` names. */
const named = (machine: (typeof DEFINITIONS)[number], all: readonly string[]) => {
  const names = new Set(placeholders(readDefinition(machine)));
  return all.filter((b) => names.has(`${activityName(b)}FunctionArn`));
};
/**
 * Each state machine's logical id, name, type, logging level and the activity binaries
 * it calls: the order saga's are split between the saga (what waits, and the
 * compensations) and its Express child (the forward steps that do not wait).
 */
const machines = [
  { machine: 'order-saga', id: machineId, name: 'oms-order-saga', type: 'STANDARD', level: 'ERROR', binaries: named('order-saga', SAGA_BINARIES) },
  { machine: 'order-prepare', id: prepareId, name: 'oms-order-saga-prepare', type: 'EXPRESS', level: 'ERROR', binaries: named('order-prepare', SAGA_BINARIES) },
  { machine: 'order-amend', id: amendId, name: 'oms-order-amend', type: 'STANDARD', level: 'ALL', binaries: AMEND_BINARIES },
] as const;
/** The machines whose activities activities.json lists (the child calls the saga's). */
const listed = machines.filter((m) => m.machine !== 'order-prepare');
const keyArn = { 'Fn::GetAtt': [keyId, 'Arn'] };

/** The execution ARN pattern of this machine, as the template writes it. */
// What activities/src/store/dynamo.rs calls: GetItem, Query, Scan, and
// TransactWriteItems, which IAM authorises per write as Put/Update/Delete/ConditionCheck.
// (A literal, not the stack's constant: the test must see a change to either.)
const TABLE_ACTIONS = [
  'dynamodb:ConditionCheckItem',
  'dynamodb:DeleteItem',
  'dynamodb:GetItem',
  'dynamodb:PutItem',
  'dynamodb:Query',
  'dynamodb:Scan',
  'dynamodb:UpdateItem',
];
const executionsOf = (id: string) => ({
  'Fn::Join': [
    '',
    [
      'arn:',
      { Ref: 'AWS::Partition' },
      ':states:',
      { Ref: 'AWS::Region' },
      ':',
      { Ref: 'AWS::AccountId' },
      ':execution:',
      { 'Fn::GetAtt': [id, 'Name'] },
      ':*',
    ],
  ],
});
const executionsArn = executionsOf(machineId);

/** The function resource of each activity, by activity name (PlaceOrder). */
function functionsByActivity(): Map<string, { id: string; props: any }> {
  const out = new Map<string, { id: string; props: any }>();
  for (const [placeholder, fn] of stack.functions) {
    const id = logicalId(stack, fn);
    out.set(placeholder.replace(/FunctionArn$/, ''), { id, props: resources(template, 'AWS::Lambda::Function')[id].Properties });
  }
  return out;
}

test('the stack is environment-agnostic: synth needs no account, region or credentials', () => {
  assert.equal(stack.environment, 'aws://unknown-account/unknown-region');
  assert.equal(stack.stackName, 'Oms');
  assert.ok(!/\b\d{12}\b/.test(JSON.stringify(template.toJSON())), 'an account id is written into the template');
});

test('one customer-managed KMS key, rotated, that CloudWatch Logs and alarms may use', () => {
  template.resourceCountIs('AWS::KMS::Key', 1);
  template.hasResource('AWS::KMS::Key', { DeletionPolicy: 'Retain' });
  const key = Object.values(resources(template, 'AWS::KMS::Key'))[0].Properties;
  assert.equal(key.EnableKeyRotation, true);
  const statements = key.KeyPolicy.Statement as any[];
  const logs = statements.find((s) => s.Sid === 'CloudWatchLogsUseOfTheKey');
  assert.ok(logs, 'no key policy statement for CloudWatch Logs');
  assert.deepEqual(logs.Principal.Service, { 'Fn::Join': ['', ['logs.', { Ref: 'AWS::Region' }, '.amazonaws.com']] });
  assert.ok(actions(logs).includes('kms:GenerateDataKey*') && actions(logs).includes('kms:Decrypt*'));
  assert.ok(logs.Condition.ArnLike['kms:EncryptionContext:aws:logs:arn'], 'the logs statement is not scoped by log group ARN');
  const alarms = statements.find((s) => s.Principal?.Service === 'cloudwatch.amazonaws.com');
  assert.ok(alarms, 'CloudWatch alarms cannot publish to the encrypted topic');
  assert.deepEqual(actions(alarms), ['kms:Decrypt', 'kms:GenerateDataKey*']);
  assert.equal(alarms.Condition, undefined, 'a condition here can silently stop alarm notifications');
});

test('one DynamoDB table: pk/sk strings, on demand, PITR, the key, deletion protection, retained', () => {
  template.resourceCountIs('AWS::DynamoDB::Table', 1);
  const table = resources(template, 'AWS::DynamoDB::Table')[tableId];
  assert.equal(table.DeletionPolicy, 'Retain');
  assert.equal(table.UpdateReplacePolicy, 'Retain');
  const p = table.Properties;
  assert.deepEqual(p.KeySchema, [
    { AttributeName: 'pk', KeyType: 'HASH' },
    { AttributeName: 'sk', KeyType: 'RANGE' },
  ]);
  assert.deepEqual(p.AttributeDefinitions, [
    { AttributeName: 'pk', AttributeType: 'S' },
    { AttributeName: 'sk', AttributeType: 'S' },
  ]);
  assert.equal(p.BillingMode, 'PAY_PER_REQUEST');
  assert.deepEqual(p.PointInTimeRecoverySpecification, { PointInTimeRecoveryEnabled: true });
  assert.deepEqual(p.SSESpecification, { SSEEnabled: true, SSEType: 'KMS', KMSMasterKeyId: keyArn });
  assert.equal(p.DeletionProtectionEnabled, true);
  assert.equal(p.GlobalSecondaryIndexes, undefined);
  assert.equal(p.LocalSecondaryIndexes, undefined);
  assert.equal(p.ProvisionedThroughput, undefined);
});

test('the activities are the sixteen binaries of activities/src/bin, each with its machine', () => {
  assert.deepEqual(stack.activities.map((a) => a.binary), EXPECTED_BINARIES);
  assert.equal(activityName('record-order-status'), 'RecordOrderStatus');
  assert.deepEqual(stack.activities.filter((a) => a.machine === 'order-saga').map((a) => a.binary), SAGA_BINARIES);
  assert.deepEqual(stack.activities.filter((a) => a.machine === 'order-amend').map((a) => a.binary), AMEND_BINARIES);
  // The saga and its child call the saga's activities between them; RecordOrderStatus both.
  const split = new Set([...machines[0].binaries, ...machines[1].binaries]);
  assert.deepEqual([...split].sort(), [...SAGA_BINARIES].sort());
  const compensations = (machine: string) =>
    stack.activities.filter((a) => a.compensates !== null && a.machine === machine).map((a) => a.name).sort();
  assert.deepEqual(compensations('order-saga'), COMPENSATIONS);
  assert.deepEqual(compensations('order-amend'), AMEND_COMPENSATIONS);
});

test('sixteen Lambda functions: provided.al2023, x86_64, bootstrap, 256 MB, 30 s, active tracing, OMS_STORE', () => {
  // The sixteen activities and the outbox relay (lib/events.ts, tested below).
  template.resourceCountIs('AWS::Lambda::Function', EXPECTED_BINARIES.length + 1);
  for (const [name, { props }] of functionsByActivity()) {
    assert.equal(props.Runtime, 'provided.al2023', name);
    assert.deepEqual(props.Architectures, ['x86_64'], name);
    assert.equal(props.Handler, 'bootstrap', name);
    assert.equal(props.MemorySize, 256, name);
    assert.equal(props.Timeout, 30, name);
    assert.deepEqual(props.TracingConfig, { Mode: 'Active' }, name);
    assert.deepEqual(
      props.Environment.Variables,
      { OMS_STORE: { 'Fn::Join': ['', ['dynamodb:', { Ref: tableId }]] } },
      name,
    );
  }
});

test('each function\'s code is <lambdaZipDir>/<binary>/bootstrap.zip', () => {
  const outdir = (stack.node.root as any).outdir as string;
  const manifest = JSON.parse(fs.readFileSync(path.join(outdir, `${stack.artifactId}.assets.json`), 'utf8'));
  const keys = new Set<string>();
  for (const [name, { props }] of functionsByActivity()) {
    const binary = stack.activities.find((a) => a.name === name)!.binary;
    const key: string = props.Code.S3Key;
    keys.add(key);
    const asset = manifest.files[key.replace(/\.zip$/, '')];
    assert.equal(asset.source.packaging, 'file', name);
    assert.deepEqual(
      fs.readFileSync(path.join(outdir, asset.source.path)),
      fs.readFileSync(path.join(standInZipDir(), binary, 'bootstrap.zip')),
      name,
    );
  }
  assert.equal(keys.size, EXPECTED_BINARIES.length, 'two functions share one zip');
});

/** The activities' functions (the outbox relay is not one). */
function activityFunctions(t: any): any[] {
  return (Object.values(resources(t, 'AWS::Lambda::Function')) as any[]).filter(
    (fn) => fn.Properties.Runtime === 'provided.al2023',
  );
}

test('seedDemo=true sets OMS_SEED_DEMO=1 on every function', () => {
  const seeded = synth({ seedDemo: 'true' }).template;
  const fns = activityFunctions(seeded);
  assert.equal(fns.length, EXPECTED_BINARIES.length);
  for (const fn of fns) {
    assert.equal(fn.Properties.Environment.Variables.OMS_SEED_DEMO, '1');
  }
});

test('fault injection is off unless faultInjection=true turns it on', () => {
  const fns = activityFunctions;
  for (const fn of fns(template)) {
    assert.equal(fn.Properties.Environment.Variables.OMS_FAULT_INJECTION, undefined);
  }
  const on = fns(synth({ faultInjection: 'true' }).template);
  assert.equal(on.length, EXPECTED_BINARIES.length);
  for (const fn of on) {
    assert.equal(fn.Properties.Environment.Variables.OMS_FAULT_INJECTION, '1');
  }
});

test('each function has its own role, granted only the table, the key, its log group and X-Ray', () => {
  const roles = new Set<string>();
  for (const [name, { props }] of functionsByActivity()) {
    const roleId = props.Role['Fn::GetAtt'][0];
    assert.ok(!roles.has(roleId), `${name} shares a role`);
    roles.add(roleId);
    const role = resources(template, 'AWS::IAM::Role')[roleId].Properties;
    assert.equal(role.AssumeRolePolicyDocument.Statement.length, 1);
    assert.deepEqual(role.AssumeRolePolicyDocument.Statement[0].Principal, { Service: 'lambda.amazonaws.com' });
    assert.equal(role.ManagedPolicyArns, undefined, `${name} has managed policies`);
    assert.equal(role.Policies, undefined, `${name} has inline policies`);

    const logGroupId = props.LoggingConfig.LogGroup.Ref;
    const logGroup = resources(template, 'AWS::Logs::LogGroup')[logGroupId].Properties;
    assert.deepEqual(logGroup.KmsKeyId, keyArn, `${name}'s log group is not encrypted with the key`);
    assert.ok(logGroup.RetentionInDays > 0, `${name}'s log group keeps events forever`);

    const statements = roleStatements(template, roleId);
    const rest = [...statements];
    const take = (pred: (s: any) => boolean, what: string) => {
      const i = rest.findIndex(pred);
      assert.ok(i >= 0, `${name}: no statement for ${what}`);
      return rest.splice(i, 1)[0];
    };
    const dynamo = take((s) => actions(s).some((a) => a.startsWith('dynamodb:')), 'DynamoDB');
    assert.deepEqual(actions(dynamo), TABLE_ACTIONS);
    assert.deepEqual(resourcesOf(dynamo), [{ 'Fn::GetAtt': [tableId, 'Arn'] }]);
    const kms = take((s) => actions(s).some((a) => a.startsWith('kms:')), 'KMS');
    assert.deepEqual(actions(kms), ['kms:Decrypt', 'kms:DescribeKey', 'kms:Encrypt', 'kms:GenerateDataKey']);
    assert.deepEqual(resourcesOf(kms), [keyArn]);
    const logs = take((s) => actions(s).some((a) => a.startsWith('logs:')), 'logs');
    assert.deepEqual(actions(logs), ['logs:CreateLogStream', 'logs:PutLogEvents']);
    assert.deepEqual(resourcesOf(logs), [{ 'Fn::GetAtt': [logGroupId, 'Arn'] }]);
    const xray = take((s) => actions(s).some((a) => a.startsWith('xray:')), 'X-Ray');
    assert.deepEqual(actions(xray), ['xray:PutTelemetryRecords', 'xray:PutTraceSegments']);
    assert.deepEqual(rest, [], `${name}: unexpected statements`);
    for (const s of statements) {
      assert.equal(s.Effect, 'Allow');
      assert.ok(!actions(s).some((a) => a.endsWith(':*')), `${name}: a service-wide wildcard action`);
    }
  }
  assert.equal(roles.size, EXPECTED_BINARIES.length);
});

for (const m of machines) {
test(`${m.machine}: ${m.type}, logs ${m.level} with execution data to an encrypted group, tracing`, () => {
  template.resourceCountIs('AWS::StepFunctions::StateMachine', machines.length);
  const sm = resources(template, 'AWS::StepFunctions::StateMachine')[m.id].Properties;
  assert.equal(sm.StateMachineType, m.type);
  assert.equal(sm.StateMachineName, m.name);
  assert.equal(sm.LoggingConfiguration.Level, m.level);
  assert.equal(sm.LoggingConfiguration.IncludeExecutionData, true);
  const groupId = sm.LoggingConfiguration.Destinations[0].CloudWatchLogsLogGroup.LogGroupArn['Fn::GetAtt'][0];
  const group = resources(template, 'AWS::Logs::LogGroup')[groupId].Properties;
  assert.deepEqual(group.KmsKeyId, keyArn);
  assert.ok(group.RetentionInDays > 0);
  // Under /aws/vendedlogs/, and unique per stack (the group outlives its stack).
  assert.deepEqual(group.LogGroupName['Fn::Join'][1][0], `/aws/vendedlogs/states/${m.name}-`);
  assert.match(JSON.stringify(group.LogGroupName), /"Ref":"AWS::StackId"/);
  assert.deepEqual(sm.TracingConfiguration, { Enabled: true });
});

/** The function resources of machine `m`'s activities, by activity name. */
function functionsOf(m: (typeof machines)[number]): Map<string, { id: string; props: any }> {
  const own = new Set(m.binaries.map(activityName));
  return new Map([...functionsByActivity()].filter(([name]) => own.has(name)));
}

test(`${m.machine}: the definition is the repository's, every placeholder filled with its own activity's function`, () => {
  const sm = resources(template, 'AWS::StepFunctions::StateMachine')[m.id].Properties;
  const definition = readDefinition(m.machine);
  // Not moved to S3: cfn-lint and these assertions see it.
  assert.equal(sm.DefinitionString, definition);
  assert.equal(sm.DefinitionS3Location, undefined);
  const fns = functionsOf(m);
  const names = placeholders(definition);
  assert.deepEqual(Object.keys(sm.DefinitionSubstitutions).sort(), [...names].sort());
  if (m.machine === 'order-saga') {
    // The saga names its Express child.
    assert.deepEqual(sm.DefinitionSubstitutions[CHILD_PLACEHOLDER], { Ref: prepareId });
  }
  for (const name of names.filter((n) => n !== CHILD_PLACEHOLDER)) {
    const activity = name.replace(/FunctionArn$/, '');
    assert.deepEqual(sm.DefinitionSubstitutions[name], { 'Fn::GetAtt': [fns.get(activity)!.id, 'Arn'] }, name);
  }
  // Every function is used, and once substituted no placeholder is left.
  const functionValues = Object.values(sm.DefinitionSubstitutions).filter((v: any) => v['Fn::GetAtt'] !== undefined);
  const used = new Set(functionValues.map((v: any) => v['Fn::GetAtt'][0]));
  assert.deepEqual([...used].sort(), [...fns.values()].map((f) => f.id).sort());
  let substituted = definition;
  for (const [name, value] of Object.entries(sm.DefinitionSubstitutions)) {
    const arn = (value as any)['Fn::GetAtt']?.[0] ?? 'child';
    substituted = substituted.split('${' + name + '}').join(`arn:aws:lambda:r:1:function:${arn}`);
  }
  assert.ok(!substituted.includes('${'), 'a ${...} is left in the definition');
  JSON.parse(substituted);
});

test(`${m.machine}: its role may invoke exactly its own functions, and trusts Step Functions of this account`, () => {
  const sm = resources(template, 'AWS::StepFunctions::StateMachine')[m.id].Properties;
  const roleId = sm.RoleArn['Fn::GetAtt'][0];
  const role = resources(template, 'AWS::IAM::Role')[roleId].Properties;
  assert.deepEqual(role.AssumeRolePolicyDocument.Statement[0].Principal, { Service: 'states.amazonaws.com' });
  assert.deepEqual(role.AssumeRolePolicyDocument.Statement[0].Condition, {
    StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } },
  });
  const statements = roleStatements(template, roleId);
  const invoke = statements.filter((s) => actions(s).some((a) => a.startsWith('lambda:')));
  assert.equal(invoke.length, 1);
  assert.deepEqual(actions(invoke[0]), ['lambda:InvokeFunction']);
  const fnIds = [...functionsOf(m).values()].map((f) => f.id).sort();
  assert.equal(fnIds.length, m.binaries.length);
  assert.deepEqual(resourcesOf(invoke[0]).map((r: any) => r['Fn::GetAtt'][0]).sort(), fnIds);
  assert.ok(resourcesOf(invoke[0]).every((r: any) => r['Fn::GetAtt'][1] === 'Arn'), 'only unqualified function ARNs');
  // The rest is what logging and tracing need (and for the saga, running its child),
  // nothing on data.
  const child = m.machine === 'order-saga' ? /^(logs|xray|states|events):/ : /^(logs|xray):/;
  for (const s of statements.filter((s) => s !== invoke[0])) {
    for (const a of actions(s)) {
      assert.match(a, child);
    }
  }
});
}

test('order-saga: its role may start its Express child, follow it and use the rule .sync needs', () => {
  const sm = resources(template, 'AWS::StepFunctions::StateMachine')[machineId].Properties;
  const statements = roleStatements(template, sm.RoleArn['Fn::GetAtt'][0]);
  const bySid = (sid: string) => statements.find((s: any) => s.Sid === sid);
  assert.deepEqual(actions(bySid('StartTheChild')), ['states:StartExecution']);
  assert.deepEqual(resourcesOf(bySid('StartTheChild')), [{ Ref: prepareId }]);
  assert.deepEqual(actions(bySid('FollowTheChild')), ['states:DescribeExecution', 'states:StopExecution']);
  const follow = JSON.stringify(resourcesOf(bySid('FollowTheChild')));
  assert.match(follow, /:execution:/);
  assert.match(follow, /:express:/);
  assert.match(follow, new RegExp(`"${prepareId}","Name"`));
  assert.deepEqual(actions(bySid('HearTheChildEnd')), ['events:DescribeRule', 'events:PutRule', 'events:PutTargets']);
  assert.match(JSON.stringify(resourcesOf(bySid('HearTheChildEnd'))), /rule\/StepFunctionsGetEventsForStepFunctionsExecutionRule/);
  // The child's role starts nothing.
  const child = resources(template, 'AWS::StepFunctions::StateMachine')[prepareId].Properties;
  const childStatements = roleStatements(template, child.RoleArn['Fn::GetAtt'][0]);
  assert.ok(!childStatements.some((s: any) => actions(s).some((a: string) => a.startsWith('states:'))));
});

test('the machines are exactly those of activities.json', () => {
  assert.deepEqual([...MACHINES], listed.map((m) => m.machine));
  assert.deepEqual([...DEFINITIONS].sort(), machines.map((m) => m.machine).sort());
});

test('a ${...} without a function fails synth, naming it', () => {
  // ShipShipment: a step the saga itself still runs (ChargePayment moved to its
  // Express child, order-prepare); the child's ARN is no function's.
  const definition = readSagaDefinition().replace('${ShipShipmentFunctionArn}', '${ShipParcelFunctionArn}');
  const arns = new Map([...stack.functions.keys()].map((k) => [k, `arn:${k}`]));
  arns.set('OrderPrepareStateMachineArn', 'arn:order-prepare');
  assert.throws(() => substitutions(definition, arns), /\$\{ShipParcelFunctionArn\} but no activity function/);
  // And through the stack: a repository whose definition names an unknown function.
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'oms-cdk-root-'));
  try {
    fs.cpSync(path.join(REPO_ROOT, 'activities', 'src', 'bin'), path.join(root, 'activities', 'src', 'bin'), { recursive: true });
    fs.cpSync(path.join(REPO_ROOT, 'statemachines', 'schemas'), path.join(root, 'statemachines', 'schemas'), { recursive: true });
    fs.cpSync(path.join(REPO_ROOT, 'activities', 'schemas'), path.join(root, 'activities', 'schemas'), { recursive: true });
    for (const other of fs.readdirSync(path.join(REPO_ROOT, 'statemachines')).filter((f) => f.endsWith('.asl.json'))) {
      fs.copyFileSync(path.join(REPO_ROOT, 'statemachines', other), path.join(root, 'statemachines', other));
    }
    fs.writeFileSync(path.join(root, 'statemachines', 'order-saga.asl.json'), definition);
    const { App } = require('aws-cdk-lib') as typeof import('aws-cdk-lib');
    const { OmsStack } = require('../lib/oms-stack') as typeof import('../lib/oms-stack');
    assert.throws(
      () => new OmsStack(new App(), 'Oms', { lambdaZipDir: standInZipDir(), repoRoot: root }),
      /order-saga\.asl\.json has \$\{ShipParcelFunctionArn\} but no activity function/,
    );
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('a missing Lambda zip fails synth, saying how to build it', () => {
  const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'oms-cdk-nozips-'));
  try {
    assert.throws(() => buildApp({ context: { lambdaZipDir: empty }, nag: false }), /cargo xtask lambda/);
  } finally {
    fs.rmSync(empty, { recursive: true, force: true });
  }
});

function method(httpMethod: string, resourcePath: string): any {
  const apiResources = resources(template, 'AWS::ApiGateway::Resource');
  const pathOf = (id: string | undefined): string => {
    if (!id) return '';
    const r = apiResources[id].Properties;
    return `${pathOf(r.ParentId.Ref)}/${r.PathPart}`;
  };
  const found = Object.values(resources(template, 'AWS::ApiGateway::Method')).filter(
    (m) => m.Properties.HttpMethod === httpMethod && pathOf(m.Properties.ResourceId.Ref) === resourcePath,
  );
  assert.equal(found.length, 1, `${httpMethod} ${resourcePath}`);
  return found[0].Properties;
}

function template1(m: any): string {
  return JSON.stringify(m.Integration.RequestTemplates['application/json']);
}

test('the API has exactly POST /orders and GET /orders/{id}, both IAM-authorised and validated', () => {
  template.resourceCountIs('AWS::ApiGateway::RestApi', 1);
  template.resourceCountIs('AWS::ApiGateway::Method', 2);
  const validators = resources(template, 'AWS::ApiGateway::RequestValidator');
  assert.equal(Object.keys(validators).length, 1);
  const [validatorId, validator] = Object.entries(validators)[0];
  assert.equal(validator.Properties.ValidateRequestBody, true);
  assert.equal(validator.Properties.ValidateRequestParameters, true);

  const post = method('POST', '/orders');
  assert.equal(post.AuthorizationType, 'AWS_IAM');
  assert.deepEqual(post.RequestValidatorId, { Ref: validatorId });
  const modelId = Object.keys(resources(template, 'AWS::ApiGateway::Model'))[0];
  assert.deepEqual(post.RequestModels, { 'application/json': { Ref: modelId } });

  const get = method('GET', '/orders/{id}');
  assert.equal(get.AuthorizationType, 'AWS_IAM');
  assert.deepEqual(get.RequestValidatorId, { Ref: validatorId });
  assert.deepEqual(get.RequestParameters, { 'method.request.path.id': true });
});

test('POST /orders starts the saga named by order_id; GET /orders/{id} describes that execution', () => {
  const apiRoleArn = { 'Fn::GetAtt': [logicalId(stack, stack.apiRole), 'Arn'] };
  const post = method('POST', '/orders');
  assert.equal(post.Integration.Type, 'AWS');
  assert.equal(post.Integration.IntegrationHttpMethod, 'POST');
  assert.match(JSON.stringify(post.Integration.Uri), /:states:action\/StartExecution/);
  assert.deepEqual(post.Integration.Credentials, apiRoleArn);
  assert.equal(post.Integration.PassthroughBehavior, 'NEVER');
  const postTemplate = template1(post);
  assert.ok(postTemplate.includes(JSON.stringify({ Ref: machineId })), 'the template does not name the machine');
  assert.ok(postTemplate.includes(`\\"name\\": \\"$input.path('$.order_id')\\"`), 'the execution is not named by order_id');
  assert.ok(postTemplate.includes("$util.escapeJavaScript($input.json('$'))"), 'the input is not the body');
  // escapeJavaScript turns ' into \', which JSON does not allow: it must be put back.
  assert.ok(postTemplate.includes(`.replaceAll(\\"\\\\\\\\'\\",\\"'\\")`), 'apostrophes would break the input');
  const statuses = (m: any) => m.Integration.IntegrationResponses.map((r: any) => r.StatusCode).sort();
  assert.deepEqual(statuses(post), ['202', '400', '502']);
  assert.ok(JSON.stringify(post.Integration.IntegrationResponses).includes('ExecutionAlreadyExists'));

  const get = method('GET', '/orders/{id}');
  assert.equal(get.Integration.Type, 'AWS');
  assert.match(JSON.stringify(get.Integration.Uri), /:states:action\/DescribeExecution/);
  assert.deepEqual(get.Integration.Credentials, apiRoleArn);
  const getTemplate = template1(get);
  assert.ok(getTemplate.includes(':execution:'), getTemplate);
  assert.ok(getTemplate.includes(JSON.stringify({ 'Fn::GetAtt': [machineId, 'Name'] })), 'not this machine\'s executions');
  assert.ok(getTemplate.includes("$input.params('id')"));
  assert.deepEqual(statuses(get), ['200', '400', '502']);
});

test('the API role may StartExecution on the machine and DescribeExecution on its executions, nothing else', () => {
  const roleId = logicalId(stack, stack.apiRole);
  const role = resources(template, 'AWS::IAM::Role')[roleId].Properties;
  assert.deepEqual(role.AssumeRolePolicyDocument.Statement[0].Principal, { Service: 'apigateway.amazonaws.com' });
  assert.equal(role.ManagedPolicyArns, undefined);
  const statements = roleStatements(template, roleId);
  assert.equal(statements.length, 2);
  const start = statements.find((s) => actions(s).includes('states:StartExecution'));
  assert.deepEqual(actions(start), ['states:StartExecution']);
  assert.deepEqual(resourcesOf(start), [{ Ref: machineId }]);
  const describe = statements.find((s) => actions(s).includes('states:DescribeExecution'));
  assert.deepEqual(actions(describe), ['states:DescribeExecution']);
  assert.deepEqual(resourcesOf(describe), [executionsArn]);
});

test('the stage: access logs to an encrypted group, tracing, throttling, method logging without bodies', () => {
  template.resourceCountIs('AWS::ApiGateway::Stage', 1);
  const stage = Object.values(resources(template, 'AWS::ApiGateway::Stage'))[0].Properties;
  assert.equal(stage.StageName, 'v1');
  assert.equal(stage.TracingEnabled, true);
  const destination = stage.AccessLogSetting.DestinationArn['Fn::Join'][1];
  const groupId = destination[destination.length - 1].Ref;
  assert.deepEqual(destination.slice(-2, -1), [':log-group:']);
  assert.deepEqual(resources(template, 'AWS::Logs::LogGroup')[groupId].Properties.KmsKeyId, keyArn);
  const format = JSON.parse(stage.AccessLogSetting.Format);
  assert.equal(format.requestId, '$context.requestId');
  assert.equal(format.userArn, '$context.identity.userArn');
  assert.equal(format.integrationError, '$context.integration.error');
  assert.deepEqual(stage.MethodSettings, [
    {
      DataTraceEnabled: false,
      HttpMethod: '*',
      LoggingLevel: 'INFO',
      MetricsEnabled: true,
      ResourcePath: '/*',
      ThrottlingBurstLimit: 100,
      ThrottlingRateLimit: 50,
    },
  ]);
  // API Gateway's execution log group, made by the stack so that it is encrypted too.
  template.hasResourceProperties('AWS::Logs::LogGroup', {
    LogGroupName: { 'Fn::Join': ['', ['API-Gateway-Execution-Logs_', { Ref: logicalId(stack, stack.api) }, '/v1']] },
    KmsKeyId: keyArn,
    RetentionInDays: Match.anyValue(),
  });
});

test('every log group is encrypted with the key and expires its events', () => {
  const groups = Object.values(resources(template, 'AWS::Logs::LogGroup'));
  // 16 functions, the three machines, API access and execution logs, the order events and their relay
  assert.equal(groups.length, EXPECTED_BINARIES.length + 7);
  for (const g of groups) {
    assert.deepEqual(g.Properties.KmsKeyId, keyArn);
    assert.equal(g.Properties.RetentionInDays, 90);
    assert.equal(g.DeletionPolicy, 'Retain');
  }
});

test('the operator role: assumable by the account, exactly the operator actions, on the two machines only', () => {
  const roleId = logicalId(stack, stack.operatorRole);
  const role = resources(template, 'AWS::IAM::Role')[roleId].Properties;
  const trust = role.AssumeRolePolicyDocument.Statement;
  assert.equal(trust.length, 1);
  assert.deepEqual(trust[0].Principal, {
    AWS: { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':iam::', { Ref: 'AWS::AccountId' }, ':root']] },
  });
  assert.equal(role.ManagedPolicyArns, undefined);
  const statements = roleStatements(template, roleId);
  const all = statements.flatMap(actions).sort();
  assert.deepEqual(all, [
    'states:DescribeExecution',
    'states:DescribeStateMachine',
    'states:DescribeStateMachineForExecution',
    'states:GetExecutionHistory',
    'states:ListExecutions',
    'states:RedriveExecution',
    'states:StopExecution',
  ]);
  for (const s of statements) {
    const isMachine = actions(s).every((a) => OPERATOR_MACHINE_ACTIONS.includes(a));
    const isExecution = actions(s).every((a) => OPERATOR_EXECUTION_ACTIONS.includes(a));
    assert.ok(isMachine !== isExecution, 'a statement mixes machine and execution actions');
    const sorted = (rs: any[]) => rs.map((r) => JSON.stringify(r)).sort();
    const want = isMachine ? listed.map((m) => ({ Ref: m.id })) : listed.map((m) => executionsOf(m.id));
    assert.deepEqual(sorted(resourcesOf(s)), sorted(want));
  }
});

test('the Orders service role: the two machines, their executions, the saga\'s task answers, the table and key; no more', () => {
  const roleId = logicalId(stack, stack.serviceRole);
  const role = resources(template, 'AWS::IAM::Role')[roleId].Properties;
  assert.equal(role.AssumeRolePolicyDocument.Statement.length, 1);
  assert.equal(role.ManagedPolicyArns, undefined);
  const statements = roleStatements(template, roleId);
  const byResource = new Map<string, string[]>();
  for (const s of statements) {
    for (const r of resourcesOf(s)) {
      const k = JSON.stringify(r);
      byResource.set(k, [...(byResource.get(k) ?? []), ...actions(s)].sort());
    }
  }
  assert.deepEqual(byResource.get(JSON.stringify({ Ref: machineId })), [
    'states:DescribeStateMachine',
    'states:ListExecutions',
    'states:SendTaskFailure',
    'states:SendTaskHeartbeat',
    'states:SendTaskSuccess',
    'states:StartExecution',
  ]);
  // PATCH /orders/{id} starts the amendment's execution; oms reads and redrives it.
  assert.deepEqual(byResource.get(JSON.stringify({ Ref: amendId })), [
    'states:DescribeStateMachine',
    'states:ListExecutions',
    'states:StartExecution',
  ]);
  for (const m of listed) {
    assert.deepEqual(byResource.get(JSON.stringify(executionsOf(m.id))), [
      'states:DescribeExecution',
      'states:DescribeStateMachineForExecution',
      'states:GetExecutionHistory',
      'states:RedriveExecution',
      'states:StopExecution',
    ]);
  }
  const table = { 'Fn::GetAtt': [tableId, 'Arn'] };
  assert.deepEqual(byResource.get(JSON.stringify(table)), TABLE_ACTIONS);
  assert.deepEqual(byResource.get(JSON.stringify(keyArn)), ['kms:Decrypt', 'kms:DescribeKey', 'kms:Encrypt', 'kms:GenerateDataKey']);
  assert.equal(byResource.size, 6, [...byResource.keys()].join(' '));
});

test('the alarm topic is encrypted with the key, refuses non-TLS publishing, lets this account\'s alarms publish', () => {
  template.resourceCountIs('AWS::SNS::Topic', 1);
  const topicId = logicalId(stack, stack.alarmTopic);
  const topic = resources(template, 'AWS::SNS::Topic')[topicId].Properties;
  assert.deepEqual(topic.KmsMasterKeyId, keyArn);
  const policies = Object.values(resources(template, 'AWS::SNS::TopicPolicy'));
  assert.equal(policies.length, 1);
  assert.deepEqual(policies[0].Properties.Topics, [{ Ref: topicId }]);
  const statements = policies[0].Properties.PolicyDocument.Statement as any[];
  assert.ok(
    statements.some((s) => s.Effect === 'Deny' && s.Condition?.Bool?.['aws:SecureTransport'] === 'false'),
    'non-TLS publishing is not refused',
  );
  // A topic policy replaces SNS's default one: without this Allow, alarms cannot publish.
  const allow = statements.find((s) => s.Effect === 'Allow');
  assert.deepEqual(allow.Principal, { Service: 'cloudwatch.amazonaws.com' });
  assert.deepEqual(actions(allow), ['sns:Publish']);
  assert.deepEqual(resourcesOf(allow), [{ Ref: topicId }]);
  assert.deepEqual(allow.Condition, {
    ArnLike: {
      'aws:SourceArn': {
        'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':cloudwatch:', { Ref: 'AWS::Region' }, ':', { Ref: 'AWS::AccountId' }, ':alarm:*']],
      },
    },
  });
});

test('alarms: failed executions and compensation-function errors, and their AND as "compensation failed"', () => {
  const topicRef = { Ref: logicalId(stack, stack.alarmTopic) };
  const all = resources(template, 'AWS::CloudWatch::Alarm');
  assert.equal(Object.keys(all).length, 3);
  const amendFailedId = logicalId(stack, stack.node.findChild('AmendExecutionsFailedAlarm') as any);
  const { [amendFailedId]: _, ...alarms } = all;
  const failed = Object.entries(alarms).find(([, a]) => a.Properties.MetricName === 'ExecutionsFailed');
  assert.ok(failed, 'no ExecutionsFailed alarm');
  const [failedId, { Properties: f }] = failed;
  assert.equal(f.Namespace, 'AWS/States');
  assert.deepEqual(f.Dimensions, [{ Name: 'StateMachineArn', Value: { Ref: machineId } }]);
  assert.equal(f.Statistic, 'Sum');
  assert.equal(f.Period, 300);
  assert.equal(f.Threshold, 1);
  assert.equal(f.EvaluationPeriods, 1);
  assert.equal(f.ComparisonOperator, 'GreaterThanOrEqualToThreshold');
  assert.equal(f.TreatMissingData, 'notBreaching');
  assert.deepEqual(f.AlarmActions, [topicRef]);
  assert.match(f.AlarmDescription, /redrive/);

  const [compId, { Properties: c }] = Object.entries(alarms).find(([id]) => id !== failedId)!;
  assert.equal(c.Threshold, 1);
  assert.equal(c.ComparisonOperator, 'GreaterThanOrEqualToThreshold');
  const expr = c.Metrics.find((m: any) => m.Expression);
  assert.equal(expr.ReturnData, true);
  const stats = c.Metrics.filter((m: any) => m.MetricStat);
  const fns = functionsByActivity();
  const watched = stats.map((m: any) => `${m.MetricStat.Metric.Namespace}/${m.MetricStat.Metric.MetricName}/${m.MetricStat.Metric.Dimensions[0].Value.Ref}`).sort();
  const expected = COMPENSATIONS.flatMap((name) => [
    `AWS/Lambda/Errors/${fns.get(name)!.id}`,
    `AWS/Lambda/Throttles/${fns.get(name)!.id}`,
  ]).sort();
  assert.deepEqual(watched, expected);
  for (const m of stats) {
    assert.equal(m.MetricStat.Period, 300);
    assert.equal(m.MetricStat.Stat, 'Sum');
    assert.ok(expr.Expression.includes(`FILL(${m.Id}, 0)`), `${m.Id} is not summed`);
  }
  assert.equal(expr.Expression.split('+').length, stats.length);
  assert.equal(c.AlarmActions, undefined, 'the compensation-errors alarm alone would page on retried transient errors');

  template.resourceCountIs('AWS::CloudWatch::CompositeAlarm', 1);
  const composite = Object.values(resources(template, 'AWS::CloudWatch::CompositeAlarm'))[0].Properties;
  assert.deepEqual(composite.AlarmRule, {
    'Fn::Join': [
      '',
      ['(ALARM("', { 'Fn::GetAtt': [failedId, 'Arn'] }, '") AND ALARM("', { 'Fn::GetAtt': [compId, 'Arn'] }, '"))'],
    ],
  });
  assert.deepEqual(composite.AlarmActions, [topicRef]);
  assert.match(composite.AlarmDescription, /[Cc]ompensation failed/);
  assert.match(composite.AlarmDescription, /redrive/);
  for (const d of [f.AlarmDescription, c.AlarmDescription, composite.AlarmDescription]) {
    assert.ok(d.length <= 1024, 'CloudWatch cuts descriptions at 1024 characters');
  }
});

test('alarms: a failed amendment execution notifies (its order stays locked until it is redriven)', () => {
  const a = resources(template, 'AWS::CloudWatch::Alarm')[logicalId(stack, stack.node.findChild('AmendExecutionsFailedAlarm') as any)].Properties;
  assert.equal(a.Namespace, 'AWS/States');
  assert.equal(a.MetricName, 'ExecutionsFailed');
  assert.deepEqual(a.Dimensions, [{ Name: 'StateMachineArn', Value: { Ref: amendId } }]);
  assert.equal(a.Statistic, 'Sum');
  assert.equal(a.Period, 300);
  assert.equal(a.Threshold, 1);
  assert.equal(a.TreatMissingData, 'notBreaching');
  assert.deepEqual(a.AlarmActions, [{ Ref: logicalId(stack, stack.alarmTopic) }]);
  assert.match(a.AlarmDescription, /redrive/);
  assert.ok(a.AlarmDescription.length <= 1024, 'CloudWatch cuts descriptions at 1024 characters');
});

test('the outputs are exactly those oms and operators read', () => {
  const outputs = template.toJSON().Outputs;
  assert.deepEqual(Object.keys(outputs).sort(), [
    'AlarmTopicArn',
    'AmendStateMachineArn',
    'OperatorRoleArn',
    'OrderEventBusName',
    'OrdersApiUrl',
    'OrdersServiceRoleArn',
    'OrdersTableName',
    'PrepareStateMachineArn',
    'StateMachineArn',
    'StateMachineName',
  ]);
  assert.deepEqual(outputs.OrdersTableName.Value, { Ref: tableId });
  assert.deepEqual(outputs.StateMachineArn.Value, { Ref: machineId });
  assert.deepEqual(outputs.StateMachineName.Value, { 'Fn::GetAtt': [machineId, 'Name'] });
  assert.deepEqual(outputs.AmendStateMachineArn.Value, { Ref: amendId });
  assert.deepEqual(outputs.PrepareStateMachineArn.Value, { Ref: prepareId });
  assert.deepEqual(outputs.OperatorRoleArn.Value, { 'Fn::GetAtt': [logicalId(stack, stack.operatorRole), 'Arn'] });
  assert.deepEqual(outputs.AlarmTopicArn.Value, { Ref: logicalId(stack, stack.alarmTopic) });
  assert.match(JSON.stringify(outputs.OrdersApiUrl.Value), /execute-api/);
});

test('the app reads lambdaZipDir, stateMachineName and amendStateMachineName from the context', () => {
  const { stack: renamed } = build({ stateMachineName: 'oms-saga-test', amendStateMachineName: 'oms-amend-test' });
  const sm = renamed.node.findChild('OrderSaga').node.defaultChild as any;
  assert.equal(sm.stateMachineName, 'oms-saga-test');
  const amend = renamed.node.findChild('OrderAmend').node.defaultChild as any;
  assert.equal(amend.stateMachineName, 'oms-amend-test');
});

test('order events: a bus, its archive, a rule into an encrypted log, one registered schema per type', () => {
  const buses = resources(template, 'AWS::Events::EventBus');
  assert.equal(Object.keys(buses).length, 1);
  const busId = logicalId(stack, stack.events.bus);
  const [archive] = Object.values(resources(template, 'AWS::Events::Archive')) as any[];
  assert.deepEqual(archive.Properties.SourceArn, { 'Fn::GetAtt': [busId, 'Arn'] });
  assert.deepEqual(archive.Properties.EventPattern, { source: ['oms'] });
  assert.equal(archive.Properties.RetentionDays, 365);
  const [rule] = Object.values(resources(template, 'AWS::Events::Rule')) as any[];
  assert.deepEqual(rule.Properties.EventBusName, { Ref: busId });
  assert.deepEqual(rule.Properties.EventPattern, { source: ['oms'] });
  assert.equal(rule.Properties.Targets.length, 1);
  // The schemas: exactly the schema file's types, each a draft 4 schema fixing its type.
  const file = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, EVENT_SCHEMA_FILE), 'utf8'));
  const types: string[] = file.properties.type.enum;
  const schemas = Object.values(resources(template, 'AWS::EventSchemas::Schema')) as any[];
  assert.deepEqual(schemas.map((x) => x.Properties.SchemaName).sort(), types.map((t) => `oms@${t}`).sort());
  assert.equal(Object.keys(resources(template, 'AWS::EventSchemas::Registry')).length, 1);
  const Ajv4 = require('ajv-draft-04');
  for (const x of schemas) {
    assert.equal(x.Properties.Type, 'JSONSchemaDraft4');
    const content = JSON.parse(x.Properties.Content);
    const type = x.Properties.SchemaName.slice('oms@'.length);
    const validate = new Ajv4({ strict: false }).compile(content);
    const data: any = { order_id: 'o-1', sequence: 1, status: 'COMPLETED', shipment_id: 's', warehouse_id: 'w', activity: 'A', result: {} };
    const event = { specversion: '1.0', id: 'e', source: 'oms', type, time: '2026-01-01T00:00:00Z', subject: 'o-1', datacontenttype: 'application/json', data };
    assert.ok(validate(event), `${type}: ${JSON.stringify(validate.errors)}`);
    assert.ok(!validate({ ...event, type: 'oms.order.other' }), `${type} takes another type`);
  }
});

test('the outbox relay: the table stream (NEW_IMAGE), outbox inserts only, failures to a queue; PutEvents on the bus', () => {
  const table = resources(template, 'AWS::DynamoDB::Table')[tableId] as any;
  assert.deepEqual(table.Properties.StreamSpecification, { StreamViewType: 'NEW_IMAGE' });
  const [mapping] = Object.values(resources(template, 'AWS::Lambda::EventSourceMapping')) as any[];
  assert.deepEqual(mapping.Properties.EventSourceArn, { 'Fn::GetAtt': [tableId, 'StreamArn'] });
  const filter = JSON.parse(mapping.Properties.FilterCriteria.Filters[0].Pattern);
  assert.deepEqual(filter, { eventName: ['INSERT'], dynamodb: { Keys: { pk: { S: [{ prefix: 'OUTBOX#' }] } } } });
  assert.ok(mapping.Properties.DestinationConfig.OnFailure.Destination, 'no failure destination');
  assert.equal(mapping.Properties.BisectBatchOnFunctionError, true);
  const relayRole = logicalId(stack, stack.events.relay.role!);
  const statements = roleStatements(template, relayRole);
  const put = statements.find((st: any) => [st.Action].flat().includes('events:PutEvents'));
  assert.deepEqual(put.Resource, { 'Fn::GetAtt': [logicalId(stack, stack.events.bus), 'Arn'] });
  const writes = statements.filter((st: any) => [st.Action].flat().some((a: string) => /dynamodb:(Put|Update|Delete)/.test(a)));
  assert.deepEqual(writes.map((st: any) => st.Action).flat(), ['dynamodb:DeleteItem']);
});
