/*
 * What clang's static analyzer is told about common/base/error.c; only
 * tests/lint/analyze.sh includes this (clang -include), ahead of each file
 * it analyzes, and never into a build.
 *
 * Why: the analyzer sees one .c file at a time, so it does not know that
 * coffer_err_set() and friends return the negative code they were given.
 * Every `return (coffer_err_set(err, ...));` then looks as if it could
 * return 0, and the analyzer follows "failed, yet returned 0" paths that
 * cannot happen and reports the outputs the failing function never wrote
 * (24 false "garbage value" and "null pointer" reports on this tree). These
 * wrappers state the contract error.h documents, and nothing more: the
 * setters return a negative code, coffer_err_exit_status() 1 or 2.
 *
 * What it costs: a caller that passes 0 as the code, or calls
 * coffer_err_hint()/coffer_err_wrap() on an error that was never set, is
 * assumed not to; ASan/UBSan and the tests are the check for those.
 */
#ifndef COFFER_TESTS_LINT_ANALYZER_MODEL_H
#define COFFER_TESTS_LINT_ANALYZER_MODEL_H

#include "common/base/error.h"

static inline int
coffer_analyzer_failed(int code)
{
	if (code >= 0) {
		__builtin_unreachable();
	}
	return (code);
}

static inline int
coffer_analyzer_exit_status(int status)
{
	if (status != 1 && status != 2) {
		__builtin_unreachable();
	}
	return (status);
}

#define coffer_err_set(...)          coffer_analyzer_failed(coffer_err_set(__VA_ARGS__))
#define coffer_err_hint(...)         coffer_analyzer_failed(coffer_err_hint(__VA_ARGS__))
#define coffer_err_wrap(...)         coffer_analyzer_failed(coffer_err_wrap(__VA_ARGS__))
#define coffer_err_errno(...)        coffer_analyzer_failed(coffer_err_errno(__VA_ARGS__))
#define coffer_err_openssl(...)      coffer_analyzer_failed(coffer_err_openssl(__VA_ARGS__))
#define coffer_err_exit_status(code) coffer_analyzer_exit_status(coffer_err_exit_status(code))

#endif
