package views

import "strconv"

func int64String(n int64) string { return strconv.FormatInt(n, 10) }

func flashRole(kind string) string {
	if kind == "error" {
		return "alert"
	}
	return "status"
}
