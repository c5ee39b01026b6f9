// Order events on AWS (docs/events.md): the bus they go to, an archive of it, a rule
// that keeps a log of them, their JSON Schemas registered with EventBridge (one per
// type, all derived from the one schema file the Rust tests validate events against),
// and the relay: a function on the order table's stream that puts each new outbox item's
// events on the bus.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { Aws, Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as events from 'aws-cdk-lib/aws-events';
import * as eventschemas from 'aws-cdk-lib/aws-eventschemas';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sources from 'aws-cdk-lib/aws-lambda-event-sources';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { toDraft4, type Json } from './draft4';

/** The event schema file, relative to the repository. */
export const EVENT_SCHEMA_FILE = 'activities/schemas/order-event.schema.json';
/** The outbox items' partition prefix (activities/src/events.rs). */
export const OUTBOX_PK_PREFIX = 'OUTBOX#';

type JsonObject = { [key: string]: Json };

/** The schema file's event types, and for each the draft 4 schema of that type alone
 * (EventBridge registers JSONSchemaDraft4 or OpenAPI 3): the common shape with `type`
 * fixed and the `data` fields the file's conditions require of that type made required
 * outright (draft 4 has no if/then). */
export function eventSchemas(root: string): Map<string, Json> {
  const file = JSON.parse(fs.readFileSync(path.join(root, EVENT_SCHEMA_FILE), 'utf8')) as JsonObject;
  const props = file.properties as JsonObject;
  const types = (props.type as JsonObject).enum as string[];
  const conditions = (file.allOf ?? []) as JsonObject[];
  const defs = file.$defs as JsonObject;
  const out = new Map<string, Json>();
  for (const type of types) {
    const required = new Set<string>(((defs.data as JsonObject).required as string[]) ?? []);
    for (const c of conditions) {
      const pattern = (((c.if as JsonObject).properties as JsonObject).type as JsonObject).pattern as string;
      if (new RegExp(pattern).test(type)) {
        const need = ((((c.then as JsonObject).properties as JsonObject).data as JsonObject).required as string[]) ?? [];
        need.forEach((r) => required.add(r));
      }
    }
    const { allOf: _conditions, ...rest } = file;
    const one: JsonObject = {
      ...rest,
      title: type,
      properties: { ...props, type: { const: type }, data: { ...(defs.data as JsonObject), required: [...required] } },
    };
    delete one.$defs;
    out.set(type, { $schema: 'http://json-schema.org/draft-04/schema#', ...(toDraft4(one) as JsonObject) });
  }
  return out;
}

export interface OrderEventsProps {
  readonly table: dynamodb.Table;
  readonly key: kms.Key;
  readonly logRetention: logs.RetentionDays;
  readonly root: string;
}

export class OrderEvents extends Construct {
  readonly bus: events.EventBus;
  readonly archive: events.Archive;
  readonly rule: events.Rule;
  readonly registry: eventschemas.CfnRegistry;
  readonly relay: lambda.Function;

  constructor(scope: Construct, id: string, props: OrderEventsProps) {
    super(scope, id);
    const { table, key } = props;
    this.bus = new events.EventBus(this, 'Bus', { description: 'oms order events (CloudEvents 1.0 in detail)' });
    this.archive = this.bus.archive('Archive', {
      description: 'Every oms order event, to replay to a consumer that missed some',
      eventPattern: { source: ['oms'] },
      retention: Duration.days(365),
    });

    // A rule that keeps every event in a log group: what was published, to read.
    const eventLog = new logs.LogGroup(this, 'Log', {
      logGroupName: `/aws/events/oms-order-events-${Aws.STACK_NAME}`,
      retention: props.logRetention,
      encryptionKey: key,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.rule = new events.Rule(this, 'ToLog', {
      eventBus: this.bus,
      description: 'Every oms order event, into the event log group',
      eventPattern: { source: ['oms'] },
    });
    this.rule.addTarget({ bind: () => ({ arn: eventLog.logGroupArn }) });
    new logs.CfnResourcePolicy(this, 'LogPolicy', {
      policyName: `oms-order-events-${Aws.STACK_NAME}`,
      policyDocument: JSON.stringify({
        Version: '2012-10-17',
        Statement: [
          {
            Sid: 'EventBridgeWritesTheOrderEvents',
            Effect: 'Allow',
            Principal: { Service: ['events.amazonaws.com', 'delivery.logs.amazonaws.com'] },
            Action: ['logs:CreateLogStream', 'logs:PutLogEvents'],
            Resource: `${eventLog.logGroupArn}`,
          },
        ],
      }),
    });

    // The schemas, one per type.
    this.registry = new eventschemas.CfnRegistry(this, 'Registry', {
      registryName: `oms-${Aws.STACK_NAME}`,
      description: `oms order events (${EVENT_SCHEMA_FILE})`,
    });
    for (const [type, content] of eventSchemas(props.root)) {
      // Its registryName (a GetAtt of the registry) orders it after the registry.
      new eventschemas.CfnSchema(this, `Schema-${type}`, {
        registryName: this.registry.attrRegistryName,
        schemaName: `oms@${type}`,
        type: 'JSONSchemaDraft4',
        description: `oms event ${type}`,
        content: JSON.stringify(content),
      });
    }

    // The relay: the table's stream, outbox items only, to PutEvents.
    const role = new iam.Role(this, 'RelayRole', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: 'oms outbox relay: reads the order table stream, puts events on the bus, deletes relayed outbox items',
    });
    const relayLogs = new logs.LogGroup(this, 'RelayLogs', {
      retention: props.logRetention,
      encryptionKey: key,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    relayLogs.grantWrite(role);
    const failures = new sqs.Queue(this, 'RelayFailures', {
      encryptionMasterKey: key,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    Validations.of(failures).acknowledge({
      id: 'AwsSolutions-SQS3',
      reason: 'This queue is the dead-letter destination of the relay\'s stream batches that failed every retry: a queue of failures needs none of its own.',
    });
    this.relay = new lambda.Function(this, 'Relay', {
      description: 'oms outbox relay (infra-cdk/lambda/outbox-relay): order table stream to the order event bus',
      runtime: lambda.Runtime.NODEJS_24_X,
      architecture: lambda.Architecture.ARM_64,
      handler: 'index.handler',
      code: lambda.Code.fromAsset(path.join(__dirname, '..', 'lambda', 'outbox-relay')),
      memorySize: 256,
      timeout: Duration.seconds(30),
      tracing: lambda.Tracing.ACTIVE,
      environment: { EVENT_BUS_NAME: this.bus.eventBusName, TABLE_NAME: table.tableName },
      role,
      logGroup: relayLogs,
    });
    this.relay.addEventSource(
      new sources.DynamoEventSource(table, {
        startingPosition: lambda.StartingPosition.TRIM_HORIZON,
        batchSize: 100,
        bisectBatchOnError: true,
        retryAttempts: 10,
        onFailure: new sources.SqsDlq(failures),
        filters: [
          lambda.FilterCriteria.filter({
            eventName: lambda.FilterRule.isEqual('INSERT'),
            dynamodb: { Keys: { pk: { S: lambda.FilterRule.beginsWith(OUTBOX_PK_PREFIX) } } },
          }),
        ],
      }),
    );
    this.bus.grantPutEventsTo(role);
    table.grant(role, 'dynamodb:DeleteItem');
    key.grant(role, 'kms:Decrypt', 'kms:DescribeKey', 'kms:GenerateDataKey');
    Validations.of(role).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        'Active tracing (xray:PutTraceSegments, PutTelemetryRecords) and dynamodb:ListStreams support no resource-level permissions.',
    });
    // Sending to the failure queue, encrypted with the stack's key, is what CDK's
    // grantSendMessages grants: the data-key actions with wildcards, on that key only.
    for (const action of ['kms:GenerateDataKey*', 'kms:ReEncrypt*']) {
      Validations.of(role).acknowledge({
        id: `AwsSolutions-IAM5[Action::${action}]`,
        reason: `${action} on the stack's one key (its ARN is the resource): SQS needs it to encrypt what the relay sends to its failure queue.`,
      });
    }
  }
}
