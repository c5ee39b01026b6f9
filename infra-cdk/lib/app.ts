// The CDK app: the `Oms` stack, with cdk-nag's AWS Solutions checks as a validation
// plugin (synth fails on an unacknowledged error and prints every warning). The
// context comes from cdk.json and -c flags under the CLI; tests pass it here.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { DEFAULT_AMEND_STATE_MACHINE_NAME, DEFAULT_STATE_MACHINE_NAME, OmsStack } from './oms-stack';
import { REPO_ROOT } from './saga';

/** The stack's id and CloudFormation name (`cdk deploy --outputs-file` keys by it). */
export const STACK_NAME = 'Oms';

/** Where `cargo xtask lambda` writes `<function>/bootstrap.zip`. */
export const DEFAULT_LAMBDA_ZIP_DIR = path.join(REPO_ROOT, 'target', 'lambda');

/** cdk.json's context (the feature flags `cdk init` recommends), for apps built by tests. */
export function cdkJsonContext(): Record<string, unknown> {
  const cdkJson = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'cdk.json'), 'utf8'));
  return cdkJson.context ?? {};
}

export interface BuildOptions {
  /** Extra context, as `-c key=value` gives it (tests pass lambdaZipDir). */
  readonly context?: Record<string, unknown>;
  /** Register cdk-nag as a validation plugin (the CLI's synth does). @default true */
  readonly nag?: boolean;
  /** @default a temporary folder */
  readonly outdir?: string;
}

/** Builds the app, not yet synthesised. */
export function buildApp(options: BuildOptions = {}): { app: App; stack: OmsStack } {
  const app = new App({
    context: options.context ? { ...cdkJsonContext(), ...options.context } : undefined,
    outdir: options.outdir,
  });
  const zipDir = app.node.tryGetContext('lambdaZipDir');
  const seedDemo = app.node.tryGetContext('seedDemo');
  const faultInjection = app.node.tryGetContext('faultInjection');
  const machineName = app.node.tryGetContext('stateMachineName');
  const amendMachineName = app.node.tryGetContext('amendStateMachineName');
  const stack = new OmsStack(app, STACK_NAME, {
    stackName: STACK_NAME,
    description: 'oms: the order saga and the amendments\' on Step Functions, its Lambda activities, DynamoDB store and Orders API (infra-cdk/)',
    // Deliberately env-agnostic: synth needs no credentials, the account and region
    // are CloudFormation's pseudo parameters, deploy takes them from the profile.
    lambdaZipDir: zipDir ? path.resolve(String(zipDir)) : DEFAULT_LAMBDA_ZIP_DIR,
    seedDemo: seedDemo === true || seedDemo === 'true',
    faultInjection: faultInjection === true || faultInjection === 'true',
    stateMachineName: machineName ? String(machineName) : DEFAULT_STATE_MACHINE_NAME,
    amendStateMachineName: amendMachineName ? String(amendMachineName) : DEFAULT_AMEND_STATE_MACHINE_NAME,
  });
  if (options.nag ?? true) {
    Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  }
  return { app, stack };
}
