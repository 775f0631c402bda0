#!/usr/bin/env node
'use strict';
require('../dist/src/control/node/cli.js').main(process.argv);
