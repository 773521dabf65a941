/*
 * Unit tests of lib/errbuf: the message helper of every lib/ module.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "errbuf.h"

Test(errbuf, formats_into_the_buffer)
{
	char err[32];

	errbuf_set(err, sizeof(err), "%s: %d", "port", 70000);
	cr_assert_str_eq(err, "port: 70000");
}

Test(errbuf, truncates_and_terminates)
{
	char err[8];

	memset(err, 'x', sizeof(err));
	errbuf_set(err, sizeof(err), "%s", "a long message");
	cr_assert_str_eq(err, "a long ");
}

Test(errbuf, null_or_empty_buffer_is_left_alone)
{
	char err[4] = "abc";

	errbuf_set(NULL, 10, "%s", "ignored");
	errbuf_set(err, 0, "%s", "ignored");
	cr_assert_str_eq(err, "abc");
}
