# SPDX-License-Identifier: Apache-2.0
# Install-time part of `cmake --install` (and of CPack, which installs the same way): the unit,
# tmpfiles and default config are written with the paths of the prefix being installed to, so a
# `cmake --install build --prefix DIR` unit starts DIR/bin/nsimad and documents DIR/share/doc,
# and the .deb's (prefix /usr) names /usr/bin/nsimad and /etc/nsima. Set by the caller:
# NSIMA_SRC (source tree), NSIMA_GEN (where the filled-in files are written).
set(prefix "${CMAKE_INSTALL_PREFIX}")
string(REGEX REPLACE "/+$" "" prefix "${prefix}")
# GNUInstallDirs' rule: prefix /usr keeps its configuration in /etc, any other in PREFIX/etc.
if(prefix STREQUAL "/usr")
  set(NSIMA_SYSCONFDIR "/etc")
else()
  set(NSIMA_SYSCONFDIR "${prefix}/etc")
endif()
set(NSIMA_BINDIR "${prefix}/bin")
set(NSIMA_CONFDIR "${NSIMA_SYSCONFDIR}/nsima")
set(NSIMA_DOCDIR "${prefix}/share/doc/nsima")
set(NSIMA_POLICYDIR "${prefix}/share/nsima/policies")
set(NSIMA_UNITDIR "${prefix}/lib/systemd/system")
set(NSIMA_TMPFILESDIR "${prefix}/lib/tmpfiles.d")

file(MAKE_DIRECTORY "${NSIMA_GEN}")
configure_file("${NSIMA_SRC}/systemd/nsimad.service.in" "${NSIMA_GEN}/nsimad.service" @ONLY)
file(INSTALL DESTINATION "${NSIMA_UNITDIR}" TYPE FILE FILES "${NSIMA_GEN}/nsimad.service")
file(INSTALL DESTINATION "${NSIMA_TMPFILESDIR}" TYPE FILE
     FILES "${NSIMA_SRC}/systemd/nsima.tmpfiles.conf" RENAME nsima.conf)
file(INSTALL DESTINATION "${NSIMA_CONFDIR}" TYPE FILE FILES "${NSIMA_SRC}/systemd/nsimad.conf")
# oci-hooks(5) files for podman and CRI-O (package directory; /etc/containers/oci/hooks.d is the
# administrator's): every container gets its namespace (createRuntime) and its archive (poststop).
foreach(stage createRuntime poststop)
  configure_file("${NSIMA_SRC}/systemd/nsima-${stage}.json.in" "${NSIMA_GEN}/nsima-${stage}.json" @ONLY)
  file(INSTALL DESTINATION "${prefix}/share/containers/oci/hooks.d" TYPE FILE
       FILES "${NSIMA_GEN}/nsima-${stage}.json")
endforeach()
