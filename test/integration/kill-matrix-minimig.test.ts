import { killMatrix } from '../kill/matrix.js';

/** The kill matrix (#14) of minimig: gdb, minimig and migrace itself killed over a recording, a replay and a hunt (test/kill/matrix.ts). */
killMatrix('minimig');
