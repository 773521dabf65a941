/*
 * test_utf8.c - lib/utf8.c: good text and every kind of bad sequence, for
 * the whole-string check and the sequence length the log uses.
 */
#include <criterion/criterion.h>

#include "utf8.h"

Test(utf8, utf8_accepts_well_formed_text)
{
	cr_assert(utf8_valid("", 0));
	cr_assert(utf8_valid("proxy-1", 7));
	cr_assert(utf8_valid("\xc3\xa9", 2));		/* U+00E9 */
	cr_assert(utf8_valid("\xe2\x82\xac", 3));		/* U+20AC */
	cr_assert(utf8_valid("\xf0\x9f\x98\x80", 4));	/* U+1F600 */
	cr_assert(utf8_valid("\xf4\x8f\xbf\xbf", 4));	/* U+10FFFF */
	cr_assert(utf8_valid("\xed\x9f\xbf", 3));		/* U+D7FF */
	/* Only len bytes count: a bad byte after them is not read. */
	cr_assert(utf8_valid("ab\xff", 2));
}

Test(utf8, utf8_refuses_bad_sequences)
{
	cr_assert_not(utf8_valid("\x80", 1), "lone continuation");
	cr_assert_not(utf8_valid("\xc0\x80", 2), "overlong NUL");
	cr_assert_not(utf8_valid("\xc1\xbf", 2), "overlong 2-byte");
	cr_assert_not(utf8_valid("\xe0\x80\x80", 3), "overlong 3-byte");
	cr_assert_not(utf8_valid("\xf0\x80\x80\x80", 4), "overlong 4-byte");
	cr_assert_not(utf8_valid("\xed\xa0\x80", 3), "surrogate D800");
	cr_assert_not(utf8_valid("\xed\xbf\xbf", 3), "surrogate DFFF");
	cr_assert_not(utf8_valid("\xf4\x90\x80\x80", 4), "above 10FFFF");
	cr_assert_not(utf8_valid("\xf5\x80\x80\x80", 4), "lead F5");
	cr_assert_not(utf8_valid("\xff", 1), "byte FF");
	cr_assert_not(utf8_valid("\xc3", 1), "cut 2-byte");
	cr_assert_not(utf8_valid("a\xe2\x82", 3), "cut 3-byte");
	cr_assert_not(utf8_valid("\xc3\x28", 2), "bad continuation");
	cr_assert_not(utf8_valid("\xf0\x9f\x98\x28", 4),
	    "bad last continuation");
}

Test(utf8, sequence_lengths)
{
	cr_assert_eq(utf8_seq((const unsigned char *)"a", 1), 1);
	cr_assert_eq(utf8_seq((const unsigned char *)"\xc3\xa9", 2), 2);
	cr_assert_eq(utf8_seq((const unsigned char *)"\xe2\x82\xac", 3), 3);
	cr_assert_eq(utf8_seq((const unsigned char *)"\xf0\x9f\x98\x80", 4),
	    4);
	cr_assert_eq(utf8_seq((const unsigned char *)"\xe2\x82\xac", 2), 0,
	    "cut by n");
	cr_assert_eq(utf8_seq((const unsigned char *)"\xed\xa0\x80", 3), 0,
	    "surrogate");
}
