package promotlp

import "strings"

// ucum converts a Prometheus unit word ("seconds", "bytes",
// "meters_per_second") to UCUM ("s", "By", "m/s") like the Collector's
// prometheus receiver; unknown words are kept.
func ucum(unit string) string {
	word, per, hasPer := strings.Cut(unit, "_per_")
	u := ucumWord(word)
	if hasPer && per != "" {
		u += "/" + ucumPer(per)
	}
	return u
}

// ucumWord converts a plural unit word.
func ucumWord(w string) string {
	switch w {
	case "days":
		return "d"
	case "hours":
		return "h"
	case "minutes":
		return "min"
	case "seconds":
		return "s"
	case "milliseconds":
		return "ms"
	case "microseconds":
		return "us"
	case "nanoseconds":
		return "ns"
	case "bytes":
		return "By"
	case "kibibytes":
		return "KiBy"
	case "mebibytes":
		return "MiBy"
	case "gibibytes":
		return "GiBy"
	case "tibibytes":
		return "TiBy"
	case "kilobytes":
		return "KBy"
	case "megabytes":
		return "MBy"
	case "gigabytes":
		return "GBy"
	case "terabytes":
		return "TBy"
	case "meters":
		return "m"
	case "volts":
		return "V"
	case "amperes":
		return "A"
	case "joules":
		return "J"
	case "watts":
		return "W"
	case "grams":
		return "g"
	case "celsius":
		return "Cel"
	case "hertz":
		return "Hz"
	case "ratio":
		return "1"
	case "percent":
		return "%"
	}
	return w
}

// ucumPer converts the singular word after "_per_".
func ucumPer(w string) string {
	switch w {
	case "second":
		return "s"
	case "minute":
		return "m"
	case "hour":
		return "h"
	case "day":
		return "d"
	case "week":
		return "w"
	case "month":
		return "mo"
	case "year":
		return "y"
	}
	return w
}
