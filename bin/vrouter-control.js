#!/usr/bin/env node
'use strict';
require('../dist/src/control/control-node-cli.js').main(process.argv);
