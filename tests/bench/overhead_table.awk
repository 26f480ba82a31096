# SPDX-License-Identifier: Apache-2.0
# vm-overhead's table: reads "BOOT phase NAME open mmap exec cached cold" lines (ns/op, one line
# per phase and boot) and prints, per pattern, the median over boots of
#   nsima/idle    nsima's phase against the idle phase just before it
#   kIMA/drift    kernel IMA's phase against the idle (drift) phase just before it
#   drift/idle    the control: how far the boot moved between the two idle phases
#   nsima:kIMA    (nsima/idle) / (kIMA/drift): below 1, nsima costs less than kernel IMA
# Each ratio compares adjacent phases of one boot, so drift within the boot cancels as far as
# it can; the drift column says how far that is. Usage: awk -v mode=host -f overhead_table.awk
function median(list,    n, a, i, j, t) {  # list: space-separated numbers
	n = split(list, a, " ")
	for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
$2 == "phase" { boots[$1] = 1; for (i = 4; i <= 8; i++) v[$1, $3, i - 3] = $i }
END {
	split("open+close (measured file)|mmap(PROT_EXEC) (measured file)|fork+execve (static)|new 64 KiB file, page-cached|new 64 KiB file, cold", name, "|")
	nb = 0
	for (b in boots) nb++
	printf "nsima %s mode, %d boot(s); medians over boots of per-boot ratios (ns/op: last boot)\n", mode, nb
	printf "%-34s %9s %9s %9s %9s | %10s %10s %10s %10s\n", "pattern", "idle", "nsima", "drift", "kIMA", "nsima/idle", "kIMA/drift", "drift/idle", "nsima:kIMA"
	for (p = 1; p <= 5; p++) {
		rn = rk = rd = rx = ""
		for (b in boots) {
			n = v[b, "nsima", p] / v[b, "idle", p]
			k = v[b, "kima", p] / v[b, "drift", p]
			rn = rn " " n; rk = rk " " k; rd = rd " " v[b, "drift", p] / v[b, "idle", p]; rx = rx " " n / k
			if (b + 0 > last + 0) last = b
		}
		printf "%-34s %9d %9d %9d %9d | %10.2f %10.2f %10.2f %10.2f\n", name[p], v[last, "idle", p], v[last, "nsima", p], v[last, "drift", p], v[last, "kima", p], median(rn), median(rk), median(rd), median(rx)
	}
}
