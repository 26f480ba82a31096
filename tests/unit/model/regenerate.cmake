# SPDX-License-Identifier: Apache-2.0
# ctest model.vectors_regenerate: runs gen_vectors.py into OUT and fails unless OUT is
# byte-identical to the checked-in EXPECTED.
execute_process(COMMAND ${PYTHON} ${SCRIPT} ${OUT} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "gen_vectors.py failed (${rc})")
endif()
file(READ ${EXPECTED} want)
file(READ ${OUT} got)
if(NOT want STREQUAL got)
  message(FATAL_ERROR "${EXPECTED} differs from what gen_vectors.py writes (${OUT}): "
                      "regenerate it with python3 tests/unit/model/gen_vectors.py")
endif()
