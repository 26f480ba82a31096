// SPDX-License-Identifier: Apache-2.0
// hello: the smallest static program to exec in tests.
#include <stdio.h>

int main(void) {
  puts("hello");
  return 0;
}
