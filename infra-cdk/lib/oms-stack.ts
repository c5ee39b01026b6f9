// The oms deployment: one stack holding the order store (DynamoDB), the activities
// (Lambda), the order saga and the amendments' (Step Functions), the Orders API (API Gateway, IAM-signed),
// an operator role and the alarms. README.md says why each piece is as it is.

import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  Aws,
  CfnOutput,
  Duration,
  Fn,
  RemovalPolicy,
  Stack,
  StackProps,
  Validations,
} from 'aws-cdk-lib';
import * as apigateway from 'aws-cdk-lib/aws-apigateway';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cwActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { toDraft4, type Json } from './draft4';
import { OrderEvents } from './events';
import {
  Activity,
  CHILD_PLACEHOLDER,
  DefinitionId,
  REPO_ROOT,
  activitiesOf,
  definitionFile,
  placeholders,
  readActivities,
  readDefinition,
  substitutions,
} from './saga';

/** How long every log group of the stack keeps its events. */
export const LOG_RETENTION = logs.RetentionDays.THREE_MONTHS;
/** The API stage (the URL's last path segment). */
export const API_STAGE = 'v1';
/** The state machine's name unless the `stateMachineName` context says otherwise. */
export const DEFAULT_STATE_MACHINE_NAME = 'oms-order-saga';
/** The order saga's Express child's name: the saga's name with `-prepare`. */
export const PREPARE_SUFFIX = '-prepare';
/**
 * Logging of each state machine. The order saga logs ERROR: its whole history stays in
 * GetExecutionHistory (90 days), and at ALL its logs were $5 of a $109 month (docs/cost.md).
 * Its Express child logs ERROR with execution data: what it returned is in the saga's
 * history (Prepare's TaskSucceeded), why it failed in Prepare's TaskFailed and in the
 * child's own error events, which are all an Express execution keeps.
 */
export const LOG_LEVELS: Record<DefinitionId, sfn.LogLevel> = {
  'order-saga': sfn.LogLevel.ERROR,
  'order-prepare': sfn.LogLevel.ERROR,
  'order-amend': sfn.LogLevel.ALL,
};
/** The amendments' state machine's name unless the `amendStateMachineName` context says otherwise. */
export const DEFAULT_AMEND_STATE_MACHINE_NAME = 'oms-order-amend';

/** The DynamoDB actions the activities' store (activities/src/store/dynamo.rs) uses. */
export const STORE_ACTIONS = [
  // get, query, scan
  'dynamodb:GetItem',
  'dynamodb:Query',
  'dynamodb:Scan',
  // TransactWriteItems is authorised item by item, as the writes it holds: Put, Add
  // (an update), Delete and Check.
  'dynamodb:PutItem',
  'dynamodb:UpdateItem',
  'dynamodb:DeleteItem',
  'dynamodb:ConditionCheckItem',
];

/** What oms's Orders service (`oms up --backend aws`, the CLI's `--backend aws`) does
 * to the machine and its executions, beside the store: it starts sagas, reads them,
 * answers the warehouse's picks, cancels nothing (cancelling is a flag in the store)
 * and redrives. */
export const SERVICE_MACHINE_ACTIONS = ['states:DescribeStateMachine', 'states:ListExecutions', 'states:StartExecution'];
export const SERVICE_EXECUTION_ACTIONS = [
  'states:DescribeExecution',
  'states:DescribeStateMachineForExecution',
  'states:GetExecutionHistory',
  'states:RedriveExecution',
  'states:StopExecution',
];

/** What a caller of a table encrypted with a customer managed key needs of the key. */
export const STORE_KEY_ACTIONS = ['kms:Decrypt', 'kms:DescribeKey', 'kms:Encrypt', 'kms:GenerateDataKey'];

/** What the operator role may do, on this machine and its executions only. */
export const OPERATOR_MACHINE_ACTIONS = ['states:DescribeStateMachine', 'states:ListExecutions'];
export const OPERATOR_EXECUTION_ACTIONS = [
  'states:DescribeExecution',
  'states:DescribeStateMachineForExecution',
  'states:GetExecutionHistory',
  'states:RedriveExecution',
  'states:StopExecution',
];

export interface OmsStackProps extends StackProps {
  /** Holds `<binary>/bootstrap.zip` for every activity (`cargo xtask lambda` writes target/lambda). */
  readonly lambdaZipDir: string;
  /** Sets OMS_SEED_DEMO=1 on the functions: the demo catalog is seeded into an empty table. */
  readonly seedDemo?: boolean;
  /** Sets OMS_FAULT_INJECTION=1 on the functions: they obey the fault plans set through
   * `/admin/faults` (game days). Off, they never read them. */
  readonly faultInjection?: boolean;
  /** @default DEFAULT_STATE_MACHINE_NAME */
  readonly stateMachineName?: string;
  /** @default DEFAULT_AMEND_STATE_MACHINE_NAME */
  readonly amendStateMachineName?: string;
  /** @default the repository holding this app */
  readonly repoRoot?: string;
}

export class OmsStack extends Stack {
  readonly key: kms.Key;
  readonly table: dynamodb.Table;
  readonly activities: Activity[];
  readonly functions: Map<string, lambda.Function>;
  readonly stateMachine: sfn.StateMachine;
  /** The order saga's Express child (statemachines/order-prepare.asl.json), which its Prepare state runs. */
  readonly prepareMachine: sfn.StateMachine;
  /** The amendments' saga (statemachines/order-amend.asl.json), which PATCH /orders/{id} starts. */
  readonly amendMachine: sfn.StateMachine;
  readonly api: apigateway.RestApi;
  readonly apiRole: iam.Role;
  readonly operatorRole: iam.Role;
  readonly serviceRole: iam.Role;
  readonly alarmTopic: sns.Topic;
  readonly events: OrderEvents;

  constructor(scope: Construct, id: string, props: OmsStackProps) {
    super(scope, id, props);
    const root = props.repoRoot ?? REPO_ROOT;
    const machineName = props.stateMachineName ?? DEFAULT_STATE_MACHINE_NAME;
    const amendMachineName = props.amendStateMachineName ?? DEFAULT_AMEND_STATE_MACHINE_NAME;

    // --- One key for everything the stack stores: table, logs, alarm topic.
    this.key = new kms.Key(this, 'Key', {
      description: 'oms: encrypts the order table, the log groups and the alarm topic',
      enableKeyRotation: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    // Log group encryption: CloudWatch Logs uses the key for log groups of this account
    // and region only.
    this.key.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'CloudWatchLogsUseOfTheKey',
        principals: [new iam.ServicePrincipal(`logs.${Aws.REGION}.amazonaws.com`)],
        actions: ['kms:Encrypt*', 'kms:Decrypt*', 'kms:ReEncrypt*', 'kms:GenerateDataKey*', 'kms:Describe*'],
        resources: ['*'],
        conditions: {
          ArnLike: {
            'kms:EncryptionContext:aws:logs:arn': `arn:${Aws.PARTITION}:logs:${Aws.REGION}:${Aws.ACCOUNT_ID}:log-group:*`,
          },
        },
      }),
    );
    // CloudWatch alarms publish to the encrypted topic: they need the data key. (As AWS
    // documents it, without conditions: a kms:CallerAccount condition, for one, makes
    // the alarm's publish fail.)
    this.key.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'CloudWatchAlarmsPublishToTheEncryptedTopic',
        principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
        resources: ['*'],
      }),
    );

    // --- The store: one table, the activities' single-table design (docs/store.md).
    this.table = new dynamodb.Table(this, 'OrdersTable', {
      partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'sk', type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED,
      encryptionKey: this.key,
      deletionProtection: true,
      removalPolicy: RemovalPolicy.RETAIN,
      // New outbox items reach the order event bus through the stream (lib/events.ts).
      stream: dynamodb.StreamViewType.NEW_IMAGE,
    });
    this.events = new OrderEvents(this, 'OrderEvents', {
      table: this.table,
      key: this.key,
      logRetention: LOG_RETENTION,
      root,
    });

    // --- The activities: one function each, each with its own role and log group.
    this.activities = readActivities(root);
    this.functions = new Map();
    const environment: Record<string, string> = { OMS_STORE: `dynamodb:${this.table.tableName}` };
    if (props.seedDemo) {
      environment.OMS_SEED_DEMO = '1';
    }
    if (props.faultInjection) {
      environment.OMS_FAULT_INJECTION = '1';
    }
    for (const activity of this.activities) {
      const zip = path.resolve(props.lambdaZipDir, activity.binary, 'bootstrap.zip');
      if (!fs.existsSync(zip)) {
        throw new Error(
          `${zip} is missing: build the Lambda zips with \`cargo xtask lambda\` (they go to target/lambda), ` +
            'or point -c lambdaZipDir=DIR at a folder holding <function>/bootstrap.zip',
        );
      }
      const role = new iam.Role(this, `${activity.name}Role`, {
        assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
        description: `oms ${activity.name} Lambda function: the order table, its key, its own log group`,
      });
      const logGroup = new logs.LogGroup(this, `${activity.name}Logs`, {
        retention: LOG_RETENTION,
        encryptionKey: this.key,
        removalPolicy: RemovalPolicy.RETAIN,
      });
      logGroup.grantWrite(role);
      this.table.grant(role, ...STORE_ACTIONS);
      this.key.grant(role, ...STORE_KEY_ACTIONS);
      const fn = new lambda.Function(this, `${activity.name}Function`, {
        description: `oms activity ${activity.name} (activities/src/bin/${activity.binary}.rs)`,
        runtime: lambda.Runtime.PROVIDED_AL2023,
        architecture: lambda.Architecture.X86_64,
        handler: 'bootstrap',
        code: lambda.Code.fromAsset(zip),
        memorySize: 256,
        timeout: Duration.seconds(30),
        tracing: lambda.Tracing.ACTIVE,
        environment,
        role,
        logGroup,
      });
      Validations.of(role).acknowledge({
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason:
          'Active tracing: xray:PutTraceSegments and xray:PutTelemetryRecords support no resource-level permissions (the X-Ray service authorization reference lists no resource type for them).',
      });
      this.functions.set(activity.placeholder, fn);
    }

    // --- The state machines: the order saga and the amendments', each invoking the
    // functions of its own activities only.
    // The order saga's forward steps that do not wait run as an Express child (billed
    // per request and duration, not per state transition; docs/cost.md).
    this.prepareMachine = this.deployMachine('order-prepare', 'OrderPrepare', machineName + PREPARE_SUFFIX, root);
    this.stateMachine = this.deployMachine('order-saga', 'OrderSaga', machineName, root, this.prepareMachine);
    this.amendMachine = this.deployMachine('order-amend', 'OrderAmend', amendMachineName, root);
    const machineArn = this.stateMachine.stateMachineArn;
    const executionsOf = (m: sfn.StateMachine) =>
      `arn:${Aws.PARTITION}:states:${Aws.REGION}:${Aws.ACCOUNT_ID}:execution:${m.stateMachineName}:*`;
    const executionsArn = executionsOf(this.stateMachine);
    const executionsReason =
      'execution:<machine>:* names the executions of one state machine of this stack (an execution ARN ends with its name, the order id or order-amendment ids, known only at run time); no other machine\'s executions match.';
    const acknowledgeExecutions = (role: iam.Role, machines: sfn.StateMachine[]) =>
      Validations.of(role).acknowledge(
        ...machines.map((m) => ({
          id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:<${this.getLogicalId(m.node.defaultChild as sfn.CfnStateMachine)}.Name>:*]`,
          reason: executionsReason,
        })),
      );
    // A role people assume, for the order saga and the amendments' machine and their
    // executions.
    const machineRole = (id: string, description: string, machineActions: string[], executionActions: string[]) => {
      const machines = [this.stateMachine, this.amendMachine];
      const role = new iam.Role(this, id, { assumedBy: new iam.AccountRootPrincipal(), description });
      role.addToPrincipalPolicy(
        new iam.PolicyStatement({ sid: 'TheMachines', actions: machineActions, resources: machines.map((m) => m.stateMachineArn) }),
      );
      role.addToPrincipalPolicy(
        new iam.PolicyStatement({ sid: 'TheirExecutions', actions: executionActions, resources: machines.map(executionsOf) }),
      );
      acknowledgeExecutions(role, machines);
      return role;
    };

    // --- The Orders API: POST /orders starts the saga, GET /orders/{id} describes it.
    this.apiRole = new iam.Role(this, 'OrdersApiRole', {
      assumedBy: new iam.ServicePrincipal('apigateway.amazonaws.com'),
      description: 'oms Orders API: StartExecution of the order saga, DescribeExecution of its executions',
    });
    this.apiRole.addToPrincipalPolicy(
      new iam.PolicyStatement({ sid: 'SubmitOrders', actions: ['states:StartExecution'], resources: [machineArn] }),
    );
    this.apiRole.addToPrincipalPolicy(
      new iam.PolicyStatement({ sid: 'ReadOrders', actions: ['states:DescribeExecution'], resources: [executionsArn] }),
    );
    acknowledgeExecutions(this.apiRole, [this.stateMachine]);

    const accessLogs = new logs.LogGroup(this, 'OrdersApiAccessLogs', {
      retention: LOG_RETENTION,
      encryptionKey: this.key,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.api = new apigateway.RestApi(this, 'OrdersApi', {
      restApiName: 'oms-orders',
      description: 'oms Orders API: submit an order (starts its saga), read an order\'s saga. IAM-signed (SigV4).',
      endpointTypes: [apigateway.EndpointType.REGIONAL],
      // Execution logging needs the account's API Gateway CloudWatch role; kept on
      // stack deletion because it is an account-wide setting other APIs may use.
      cloudWatchRole: true,
      cloudWatchRoleRemovalPolicy: RemovalPolicy.RETAIN,
      deployOptions: {
        stageName: API_STAGE,
        tracingEnabled: true,
        metricsEnabled: true,
        loggingLevel: apigateway.MethodLoggingLevel.INFO,
        // Request and response bodies would put addresses and payment tokens in the logs.
        dataTraceEnabled: false,
        throttlingRateLimit: 50,
        throttlingBurstLimit: 100,
        accessLogDestination: new apigateway.LogGroupLogDestination(accessLogs),
        accessLogFormat: apigateway.AccessLogFormat.custom(
          JSON.stringify({
            requestId: '$context.requestId',
            extendedRequestId: '$context.extendedRequestId',
            ip: '$context.identity.sourceIp',
            caller: '$context.identity.caller',
            userArn: '$context.identity.userArn',
            requestTime: '$context.requestTime',
            httpMethod: '$context.httpMethod',
            resourcePath: '$context.resourcePath',
            path: '$context.path',
            status: '$context.status',
            protocol: '$context.protocol',
            responseLength: '$context.responseLength',
            responseLatency: '$context.responseLatency',
            integrationStatus: '$context.integration.status',
            integrationLatency: '$context.integration.latency',
            integrationError: '$context.integration.error',
            errorMessage: '$context.error.message',
            validationError: '$context.error.validationErrorString',
            xrayTraceId: '$context.xrayTraceId',
          }),
        ),
      },
    });
    // OrdersApiUrl below is the one output for the URL (RestApi adds its own otherwise).
    this.api.node.tryRemoveChild('Endpoint');
    // The execution log group API Gateway would otherwise create itself, unencrypted and
    // kept forever: made first, encrypted and with the stack's retention.
    const executionLogs = new logs.LogGroup(this, 'OrdersApiExecutionLogs', {
      logGroupName: `API-Gateway-Execution-Logs_${this.api.restApiId}/${API_STAGE}`,
      retention: LOG_RETENTION,
      encryptionKey: this.key,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.api.deploymentStage.node.addDependency(executionLogs);
    Validations.of(this.api).acknowledge(
      {
        id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]',
        reason:
          'The account-level role API Gateway writes execution logs with: AWS documents this managed policy for it, and API Gateway names the log groups itself (API-Gateway-Execution-Logs_<api>/<stage>), so it cannot be narrowed to this stack\'s groups.',
      },
      {
        id: 'AwsSolutions-APIG3',
        reason:
          'No WAF web ACL: every method requires SigV4 (IAM) signatures, so unsigned traffic is refused before any integration runs, and the stage is throttled; a web ACL is a per-account choice outside this stack.',
      },
      {
        id: 'AwsSolutions-COG4',
        reason:
          'The callers are AWS principals (services, operators, `oms` CLI with AWS credentials) authorised with IAM (SigV4), not end users with Cognito identities.',
      },
    );

    const validator = this.api.addRequestValidator('Validator', {
      requestValidatorName: 'body-and-parameters',
      validateRequestBody: true,
      validateRequestParameters: true,
    });
    const orderModel = this.api.addModel('OrderModel', {
      modelName: 'Order',
      contentType: 'application/json',
      description: 'An order as submitted (statemachines/schemas/PlaceOrder.input.json, draft 4, with the saga options)',
      schema: orderModelSchema(root),
    });
    const errorTemplate = [
      "#set($type = $input.path('$.__type'))",
      "#if($type.contains('ExecutionAlreadyExists'))",
      '#set($context.responseOverride.status = 409)',
      '{"error": "Order.Conflict", "message": "An order with this order_id was submitted with other content, or its saga has ended: GET /orders/{id} shows it."}',
      "#elseif($type.contains('ExecutionDoesNotExist'))",
      '#set($context.responseOverride.status = 404)',
      '{"error": "Order.NotFound", "message": "No order with this id."}',
      '#else',
      "{\"error\": \"$util.escapeJavaScript($type).replaceAll(\"\\\\'\",\"'\")\", \"message\": \"$util.escapeJavaScript($input.path('$.message')).replaceAll(\"\\\\'\",\"'\")\"}",
      '#end',
    ].join('\n');
    const errorResponses: apigateway.IntegrationResponse[] = [
      { selectionPattern: '4\\d{2}', statusCode: '400', responseTemplates: { 'application/json': errorTemplate } },
      {
        selectionPattern: '5\\d{2}',
        statusCode: '502',
        responseTemplates: { 'application/json': '{"error": "Upstream", "message": "Step Functions failed; retry."}' },
      },
    ];
    const methodResponses = (ok: string, extra: string[]) =>
      [ok, '400', ...extra, '502'].map((statusCode) => ({ statusCode }));

    const orders = this.api.root.addResource('orders');
    orders.addMethod(
      'POST',
      new apigateway.AwsIntegration({
        service: 'states',
        action: 'StartExecution',
        integrationHttpMethod: 'POST',
        options: {
          credentialsRole: this.apiRole,
          passthroughBehavior: apigateway.PassthroughBehavior.NEVER,
          requestTemplates: {
            // The execution's name is the order id (the model requires it): a repeated
            // POST of the same order, while its saga runs, is the same StartExecution,
            // which Standard workflows answer with the running execution. The input is
            // the body as JSON text; escapeJavaScript escapes ' as \', which is not a
            // JSON escape, so it is put back (an address may well hold an apostrophe).
            'application/json': [
              '{',
              `  "stateMachineArn": "${machineArn}",`,
              "  \"name\": \"$input.path('$.order_id')\",",
              "  \"input\": \"$util.escapeJavaScript($input.json('$')).replaceAll(\"\\\\'\",\"'\")\"",
              '}',
            ].join('\n'),
          },
          integrationResponses: [
            {
              statusCode: '202',
              responseTemplates: {
                'application/json': [
                  "#set($arn = $input.path('$.executionArn'))",
                  "#set($at = $arn.lastIndexOf(':') + 1)",
                  '{"order_id": "$arn.substring($at)", "execution_arn": "$arn", "start_date": $input.path(\'$.startDate\')}',
                ].join('\n'),
              },
            },
            ...errorResponses,
          ],
        },
      }),
      {
        authorizationType: apigateway.AuthorizationType.IAM,
        requestValidator: validator,
        requestModels: { 'application/json': orderModel },
        methodResponses: methodResponses('202', ['409']),
      },
    );
    const order = orders.addResource('{id}');
    order.addMethod(
      'GET',
      new apigateway.AwsIntegration({
        service: 'states',
        action: 'DescribeExecution',
        integrationHttpMethod: 'POST',
        options: {
          credentialsRole: this.apiRole,
          passthroughBehavior: apigateway.PassthroughBehavior.NEVER,
          requestTemplates: {
            'application/json': `{"executionArn": "arn:${Aws.PARTITION}:states:${Aws.REGION}:${Aws.ACCOUNT_ID}:execution:${this.stateMachine.stateMachineName}:$util.escapeJavaScript($input.params('id'))"}`,
          },
          integrationResponses: [
            {
              statusCode: '200',
              // The saga's state, not its input: the input holds the payment token and
              // the address, which GET has no need to repeat.
              responseTemplates: {
                'application/json': [
                  "#set($d = $input.path('$'))",
                  '{',
                  '  "order_id": "$d.name",',
                  '  "execution_arn": "$d.executionArn",',
                  '  "status": "$d.status",',
                  '  "start_date": $d.startDate#if($d.stopDate),',
                  '  "stop_date": $d.stopDate#end#if($d.redriveCount),',
                  '  "redrive_count": $d.redriveCount#end#if($d.error),',
                  "  \"error\": \"$util.escapeJavaScript($d.error).replaceAll(\"\\\\'\",\"'\")\"#end#if($d.cause),",
                  "  \"cause\": \"$util.escapeJavaScript($d.cause).replaceAll(\"\\\\'\",\"'\")\"#end#if($d.output),",
                  '  "output": $d.output#end',
                  '',
                  '}',
                ].join('\n'),
              },
            },
            ...errorResponses,
          ],
        },
      }),
      {
        authorizationType: apigateway.AuthorizationType.IAM,
        requestValidator: validator,
        requestParameters: { 'method.request.path.id': true },
        methodResponses: methodResponses('200', ['404']),
      },
    );

    // --- The operator: reads, stops and redrives this machine's executions, nothing else.
    this.operatorRole = machineRole(
      'OperatorRole',
      'oms operator: inspect, stop and redrive the order saga\'s executions (runbook: docs/deploy.md). Assumable by principals of this account that IAM allows to.',
      OPERATOR_MACHINE_ACTIONS,
      OPERATOR_EXECUTION_ACTIONS,
    );

    // --- oms's Orders service over the stack: what `--backend aws` needs, and no more.
    this.serviceRole = machineRole(
      'OrdersServiceRole',
      'oms --backend aws (oms up, the CLI): place and search orders, start, read and redrive the saga, answer picks (docs/deploy.md). Assumable by principals of this account that IAM allows to.',
      SERVICE_MACHINE_ACTIONS,
      SERVICE_EXECUTION_ACTIONS,
    );
    // The warehouse's answers to the picks the saga waits for.
    this.stateMachine.grantTaskResponse(this.serviceRole);
    this.table.grant(this.serviceRole, ...STORE_ACTIONS);
    this.key.grant(this.serviceRole, ...STORE_KEY_ACTIONS);

    // --- Alarms, to one encrypted topic.
    this.alarmTopic = new sns.Topic(this, 'AlarmTopic', {
      displayName: 'oms alarms',
      masterKey: this.key,
      enforceSSL: true,
    });
    // enforceSSL gives the topic a policy, and a topic policy with no Allow for
    // CloudWatch means "not authorized to perform SNS:Publish" in the alarm's history.
    this.alarmTopic.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'CloudWatchAlarmsOfThisAccountPublish',
        principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['sns:Publish'],
        resources: [this.alarmTopic.topicArn],
        conditions: {
          ArnLike: { 'aws:SourceArn': `arn:${Aws.PARTITION}:cloudwatch:${Aws.REGION}:${Aws.ACCOUNT_ID}:alarm:*` },
        },
      }),
    );
    const notify = new cwActions.SnsAction(this.alarmTopic);
    const window = Duration.minutes(5);

    const executionsFailed = new cloudwatch.Alarm(this, 'ExecutionsFailedAlarm', {
      alarmDescription: [
        `An execution of the order saga (${machineName}) failed in the last 5 minutes.`,
        'The saga catches business errors and compensates, so a failed execution is one of two things:',
        'a transient error (store, gateway, Lambda) outlasted its retries and the order keeps its status;',
        'or a compensation failed (the "compensation failed" alarm fires too) and the order shows COMPENSATION_FAILED.',
        'Operator (OperatorRole): list FAILED executions (aws stepfunctions list-executions --status-filter FAILED),',
        'read the failed state in get-execution-history, fix the cause, then',
        'aws stepfunctions redrive-execution --execution-arn ARN: it resumes at the failed state.',
        'Runbook: docs/deploy.md (redrive).',
      ].join(' '),
      metric: this.stateMachine.metricFailed({ period: window, statistic: cloudwatch.Stats.SUM }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    executionsFailed.addAlarmAction(notify);

    // Which compensation failed: the Task states call their functions through the
    // optimised integration (arn:aws:states:::lambda:invoke), for which Step Functions
    // emits ServiceIntegration* metrics keyed by the integration, not by function;
    // AWS/States LambdaFunctionsFailed (dimension LambdaFunctionArn) exists only for
    // Task states whose Resource is a function ARN, so it would stay empty here. The
    // functions' own AWS/Lambda metrics do carry the function: Errors (the function
    // returned an error, e.g. Payment.RefundRejected, or timed out) and Throttles.
    const compensations = this.activities.filter((a) => a.compensates !== null && a.machine === 'order-saga');
    const usingMetrics: Record<string, cloudwatch.IMetric> = {};
    const terms: string[] = [];
    compensations.forEach((activity, i) => {
      const fn = this.functions.get(activity.placeholder)!;
      usingMetrics[`errors${i}`] = fn.metricErrors({ period: window, statistic: cloudwatch.Stats.SUM });
      usingMetrics[`throttles${i}`] = fn.metricThrottles({ period: window, statistic: cloudwatch.Stats.SUM });
      terms.push(`FILL(errors${i}, 0)`, `FILL(throttles${i}, 0)`);
    });
    const compensationErrors = new cloudwatch.Alarm(this, 'CompensationErrorsAlarm', {
      alarmDescription: [
        `A compensation function (${compensations.map((a) => a.name).join(', ')}) returned an error, timed out or was throttled in the last 5 minutes.`,
        'Alone this may be a transient error the saga retried with success, so it notifies nobody:',
        'together with "executions failed" it raises the "compensation failed" alarm.',
        'Operator: the function\'s log group says which error; runbook: docs/deploy.md.',
      ].join(' '),
      metric: new cloudwatch.MathExpression({
        expression: terms.join(' + '),
        usingMetrics,
        period: window,
        label: 'Compensation function errors and throttles',
      }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });

    const compensationFailed = new cloudwatch.CompositeAlarm(this, 'CompensationFailedAlarm', {
      alarmDescription: [
        'Compensation failed: an order saga execution failed while a compensation function (cancel shipment, restock, refund, release inventory) was failing.',
        'Compensations are deliberately not caught (docs/saga.md), so the order is stuck half-undone: COMPENSATION_FAILED,',
        'possibly with stock reserved or a card charged. A person must look (e.g. Payment.RefundRejected: the gateway refused the refund).',
        'Operator (OperatorRole): find the execution (list-executions --status-filter FAILED; oms orders list --status COMPENSATION_FAILED),',
        'read its failed compensation in get-execution-history, fix the cause,',
        'then aws stepfunctions redrive-execution --execution-arn ARN: it reruns the failed compensation and those after it, never the forward steps.',
        'Runbook: docs/deploy.md (redrive).',
      ].join(' '),
      alarmRule: cloudwatch.AlarmRule.allOf(
        cloudwatch.AlarmRule.fromAlarm(executionsFailed, cloudwatch.AlarmState.ALARM),
        cloudwatch.AlarmRule.fromAlarm(compensationErrors, cloudwatch.AlarmState.ALARM),
      ),
    });
    compensationFailed.addAlarmAction(notify);

    // The amendments' saga catches every error before its pivot and compensates, so a
    // failed execution is a compensation (RefundAmendment, ReleaseAmendment) or the
    // record of the outcome failing past its retries: the order keeps its amendment's
    // lock until someone redrives it.
    const amendFailed = new cloudwatch.Alarm(this, 'AmendExecutionsFailedAlarm', {
      alarmDescription: [
        `An execution of the amendments' saga (${amendMachineName}) failed in the last 5 minutes.`,
        'Its order stays locked by the amendment (PATCH answers Order.NotAmendable, the order saga waits) until it ends:',
        'possibly with units reserved or a charge taken for the amendment.',
        'Operator (OperatorRole): list FAILED executions of the machine, read the failed state in get-execution-history,',
        'fix the cause, then aws stepfunctions redrive-execution --execution-arn ARN. Runbook: docs/deploy.md (redrive).',
      ].join(' '),
      metric: this.amendMachine.metricFailed({ period: window, statistic: cloudwatch.Stats.SUM }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    amendFailed.addAlarmAction(notify);

    // --- What `oms up --backend aws --stack-outputs` and operators read.
    new CfnOutput(this, 'OrdersTableName', { value: this.table.tableName, description: 'The order store (OMS_STORE=dynamodb:<this>)' });
    new CfnOutput(this, 'StateMachineArn', { value: machineArn, description: 'The order saga' });
    new CfnOutput(this, 'StateMachineName', { value: this.stateMachine.stateMachineName, description: 'The order saga\'s name' });
    new CfnOutput(this, 'PrepareStateMachineArn', {
      value: this.prepareMachine.stateMachineArn,
      description: 'The order saga\'s Express child (its forward steps that do not wait)',
    });
    new CfnOutput(this, 'AmendStateMachineArn', {
      value: this.amendMachine.stateMachineArn,
      description: 'The amendments\' saga (PATCH /orders/{id} of oms --backend aws starts it)',
    });
    new CfnOutput(this, 'OrdersApiUrl', { value: this.api.url, description: 'The Orders API (SigV4, service execute-api): POST orders, GET orders/{id}' });
    new CfnOutput(this, 'OperatorRoleArn', { value: this.operatorRole.roleArn, description: 'Assume to inspect, stop and redrive executions' });
    new CfnOutput(this, 'OrdersServiceRoleArn', { value: this.serviceRole.roleArn, description: 'Assume to run oms --backend aws (oms up, the CLI)' });
    new CfnOutput(this, 'OrderEventBusName', { value: this.events.bus.eventBusName, description: 'The order events (docs/events.md)' });
    new CfnOutput(this, 'AlarmTopicArn', { value: this.alarmTopic.topicArn, description: 'Subscribe to receive the alarms' });
  }

  /**
   * State machine `machine` (statemachines/<machine>.asl.json), with its placeholders
   * filled with its activities' function ARNs (and, for the order saga, its `child`'s
   * ARN): its own role (invoke the functions it names, start and follow its child,
   * write its logs and traces), all its executions logged at LOG_LEVELS and traced.
   */
  private deployMachine(
    machine: DefinitionId,
    id: string,
    name: string,
    root: string,
    child?: sfn.StateMachine,
  ): sfn.StateMachine {
    const definition = readDefinition(machine, root);
    const named = new Set(placeholders(definition));
    const own = this.activities.filter((a) => a.machine === activitiesOf(machine) && named.has(a.placeholder));
    const arns = new Map(own.map((a) => [a.placeholder, this.functions.get(a.placeholder)!.functionArn]));
    const values = new Map(arns);
    if (child !== undefined) {
      values.set(CHILD_PLACEHOLDER, child.stateMachineArn);
    }
    // Under /aws/vendedlogs/ so that the log delivery's resource policy covers it with
    // one wildcard (CloudWatch Logs resource policies are small); the stack id's UUID
    // keeps the name free for a later stack, since the group outlives its stack.
    const stackUuid = Fn.select(2, Fn.split('/', Aws.STACK_ID));
    const machineLogs = new logs.LogGroup(this, `${id}Logs`, {
      logGroupName: `/aws/vendedlogs/states/${name}-${stackUuid}`,
      retention: LOG_RETENTION,
      encryptionKey: this.key,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    const role = new iam.Role(this, `${id}Role`, {
      assumedBy: new iam.ServicePrincipal('states.amazonaws.com').withConditions({
        StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID },
      }),
      description: `oms ${machine}: invokes its ${own.length} activity functions${child ? ', runs its Express child' : ''}, writes its logs and traces`,
    });
    // Each function by its unqualified ARN, as the definition names it (FunctionName).
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'InvokeTheActivities',
        actions: ['lambda:InvokeFunction'],
        resources: [...arns.values()],
      }),
    );
    if (child !== undefined) {
      this.allowSyncChild(role, child);
    }
    const express = machine === 'order-prepare';
    const stateMachine = new sfn.StateMachine(this, id, {
      stateMachineName: name,
      definitionBody: sfn.DefinitionBody.fromString(definition),
      definitionSubstitutions: substitutions(definition, values, definitionFile(machine)),
      stateMachineType: express ? sfn.StateMachineType.EXPRESS : sfn.StateMachineType.STANDARD,
      role,
      logs: { destination: machineLogs, level: LOG_LEVELS[machine], includeExecutionData: true },
      tracingEnabled: true,
    });
    if (LOG_LEVELS[machine] !== sfn.LogLevel.ALL) {
      Validations.of(stateMachine).acknowledge({
        id: 'AwsSolutions-SF1',
        reason: express
          ? 'Level ERROR with execution data: what the child returns is in the order saga\'s history (Prepare\'s TaskSucceeded) and why it failed in Prepare\'s TaskFailed and in these logs; at ALL its logs would cost more than its executions (docs/cost.md).'
          : 'Level ERROR with execution data: a Standard execution\'s whole history is kept by GetExecutionHistory (90 days), so logging ALL only paid to copy it (docs/cost.md).',
      });
    }
    Validations.of(role).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        'Step Functions logging and tracing: the CloudWatch Logs log-delivery actions (logs:CreateLogDelivery, GetLogDelivery, UpdateLogDelivery, DeleteLogDelivery, ListLogDeliveries, PutResourcePolicy, DescribeResourcePolicies, DescribeLogGroups) and X-Ray\'s PutTraceSegments, PutTelemetryRecords, GetSamplingRules and GetSamplingTargets support no resource-level permissions; Step Functions documents them with Resource "*".',
    });
    return stateMachine;
  }

  /**
   * What a `states:startExecution.sync:2` Task needs (Step Functions' IAM policies for
   * nested executions): start the child, describe and stop its executions, and the
   * EventBridge rule Step Functions manages to hear when they end.
   */
  private allowSyncChild(role: iam.Role, child: sfn.StateMachine) {
    const executions = ['execution', 'express'].map(
      (kind) => `arn:${Aws.PARTITION}:states:${Aws.REGION}:${Aws.ACCOUNT_ID}:${kind}:${child.stateMachineName}:*`,
    );
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({ sid: 'StartTheChild', actions: ['states:StartExecution'], resources: [child.stateMachineArn] }),
    );
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'FollowTheChild',
        actions: ['states:DescribeExecution', 'states:StopExecution'],
        resources: executions,
      }),
    );
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'HearTheChildEnd',
        actions: ['events:PutTargets', 'events:PutRule', 'events:DescribeRule'],
        resources: [
          `arn:${Aws.PARTITION}:events:${Aws.REGION}:${Aws.ACCOUNT_ID}:rule/StepFunctionsGetEventsForStepFunctionsExecutionRule`,
        ],
      }),
    );
    const childId = this.getLogicalId(child.node.defaultChild as sfn.CfnStateMachine);
    Validations.of(role).acknowledge(
      ...['execution', 'express'].map((kind) => ({
        id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:${kind}:<${childId}.Name>:*]`,
        reason:
          'The child\'s executions (Standard ARNs execution:<child>:<name>, Express ones express:<child>:<name>:<id>) are named at run time; only this stack\'s child matches.',
      })),
    );
  }
}

/**
 * The Orders API's request model: PlaceOrder's input schema in draft 4, plus the
 * `options` the saga's ApplyDefaults state fills in when absent (as oms up's
 * OrderSubmission allows). `order_id` stays required: it names the execution.
 */
export function orderModelSchema(root: string = REPO_ROOT): apigateway.JsonSchema {
  const file = path.join(root, 'statemachines', 'schemas', 'PlaceOrder.input.json');
  const schema = toDraft4(JSON.parse(fs.readFileSync(file, 'utf8')) as Json);
  const required = schema.required;
  if (!Array.isArray(required) || !required.includes('order_id')) {
    throw new Error(`${file}: order_id must be required (it names the saga's execution)`);
  }
  const properties = schema.properties as Record<string, Json>;
  // The options' rules are the Orders API's (statemachines/schemas/OrderOptions.json,
  // generated from activities::model::OrderOptions): both fields or neither.
  const optionsFile = path.join(root, 'statemachines', 'schemas', 'OrderOptions.json');
  const options = toDraft4(JSON.parse(fs.readFileSync(optionsFile, 'utf8')) as Json);
  delete options.$schema;
  delete options.title;
  properties.options = {
    ...options,
    description: 'How long a warehouse may take to pick; the saga fills in the whole object when it is absent.',
  };
  return { schema: apigateway.JsonSchemaVersion.DRAFT4, ...(schema as object) } as apigateway.JsonSchema;
}
