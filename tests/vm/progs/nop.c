// SPDX-License-Identifier: Apache-2.0
// nop: exits 0 at once (the exec benchmark's target).
int main(void) { return 0; }
