#!/usr/bin/env node
'use strict';
require('../dist/src/cni/main.js').main();
