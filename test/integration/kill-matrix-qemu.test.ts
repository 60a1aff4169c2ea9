import { killMatrix } from '../kill/matrix.js';

/** The kill matrix (#14) of Debian's QEMU 7.2: the source and the destination QEMU killed over a recording, a replay and a hunt (test/kill/matrix.ts). */
killMatrix('qemu');
