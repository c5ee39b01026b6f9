#!/usr/bin/env node
// `cdk synth` / `cdk deploy` run this (cdk.json: npx tsx bin/oms.ts).
import { buildApp } from '../lib/app';

buildApp().app.synth();
