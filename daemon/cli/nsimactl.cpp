// SPDX-License-Identifier: Apache-2.0
// nsimactl: placeholder main, replaced as the control protocol lands.
int main() { return 0; }
