#!/usr/bin/env node
'use strict';
require('../dist/src/cli/vrouter.js').main(process.argv);
