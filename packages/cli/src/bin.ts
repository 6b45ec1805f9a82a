#!/usr/bin/env node
/**
 * The `accelerate` executable.
 * @module
 */
import { runCli } from './program.js';

process.exitCode = await runCli(process.argv.slice(2));
