# SPDX-License-Identifier: Apache-2.0
# cmake -DOUT=<file.inc> -DPOLICIES="<a.policy;b.policy>" -P embed.cmake
# Writes one initializer {"<name>", R"policy(<text>)policy"}, per policy file, in the given order:
# daemon/policy/builtin.cpp includes it, so the builtins are these files byte for byte.
set(content "// Generated from policies/*.policy by policies/embed.cmake: edit the .policy files.\n")
foreach(f ${POLICIES})
  get_filename_component(name ${f} NAME_WE)
  file(READ ${f} text)
  string(APPEND content "{\"${name}\", R\"policy(${text})policy\"},\n")
endforeach()
file(WRITE ${OUT}.tmp "${content}")
configure_file(${OUT}.tmp ${OUT} COPYONLY)
