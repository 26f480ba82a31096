// SPDX-License-Identifier: Apache-2.0
// nsimad: placeholder main, replaced as the capture path lands.
int main() { return 0; }
