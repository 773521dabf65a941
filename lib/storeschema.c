/*
 * storeschema.c - Meridio's `prefixes` table and indexes as gorm makes
 * them: an existing file's schema checked without writing, a new one
 * created, an older Meridio's file migrated as Meridio's start-up does.
 */
#include "errbuf.h"
#include "gotext.h"
#include "storeint.h"

#include <stdio.h>
#include <string.h>

/* Meridio's table, as gorm writes it. */
static const char storeschema_ddl_table[] =
    "CREATE TABLE `prefixes` (`id` text,`name` text,`cidr` text,"
    "`parent_id` text,`updated_at` datetime,`expirable` numeric DEFAULT false,"
    "PRIMARY KEY (`id`),CONSTRAINT `fk_prefixes_parent` FOREIGN KEY "
    "(`parent_id`) REFERENCES `prefixes`(`id`))";

/* Meridio's indexes. sqlite drops "IF NOT EXISTS" from the text it keeps in
 * sqlite_master, so a new file reads exactly as one gorm made. */
static const char storeschema_ddl_index[] =
    "CREATE INDEX IF NOT EXISTS `idx_prefixes_expirable` ON `prefixes`(`expirable`);"
    "CREATE INDEX IF NOT EXISTS `idx_prefixes_updated_at` ON `prefixes`(`updated_at`);"
    "CREATE UNIQUE INDEX IF NOT EXISTS `idx_parent_id_cidr` ON `prefixes`(`cidr`,`parent_id`);"
    "CREATE INDEX IF NOT EXISTS `idx_prefixes_parent_id` ON `prefixes`(`parent_id`);"
    "CREATE INDEX IF NOT EXISTS `idx_prefixes_name` ON `prefixes`(`name`);";

/* Index names, to tell whether an existing file lacks any. */
static const char *const storeschema_indexes[] = {
	"idx_prefixes_expirable", "idx_prefixes_updated_at",
	"idx_parent_id_cidr", "idx_prefixes_parent_id", "idx_prefixes_name",
};

/* Columns the table must have; those with a ddl Meridio releases before
 * garbage collection lacked, and gorm's AutoMigrate adds them so. */
static const struct {
	const char *name;
	const char *ddl;
} storeschema_columns[] = {
	{ "id", NULL }, { "name", NULL }, { "cidr", NULL },
	{ "parent_id", NULL },
	{ "updated_at", "ALTER TABLE `prefixes` ADD `updated_at` datetime" },
	{ "expirable", "ALTER TABLE `prefixes` ADD `expirable` numeric "
	    "DEFAULT false" },
};

#define STORESCHEMA_NCOLS \
	(sizeof(storeschema_columns) / sizeof(storeschema_columns[0]))

/* The node records (below a conduit, below a trench) as Meridio's
 * migrate() finds them. */
#define STORESCHEMA_NODES "SELECT `id` FROM `prefixes` WHERE `parent_id` IN " \
	"(SELECT `id` FROM `prefixes` WHERE `parent_id` IN " \
	"(SELECT `id` FROM `prefixes` WHERE `parent_id` = ''))"

/* Meridio's migrate(): a node's children other than bridges, then the
 * nodes, made expirable unless they are; gorm sets updated_at (?1) too. */
#define STORESCHEMA_MIG_KIDS "`parent_id` IN (" STORESCHEMA_NODES ") AND " \
	"`name` != 'bridge' AND (`expirable` IS NULL OR `expirable` = false)"
#define STORESCHEMA_MIG_NODES "`id` IN (" STORESCHEMA_NODES ") AND " \
	"(`expirable` IS NULL OR `expirable` = false)"
static const char storeschema_mig_kids[] = "UPDATE `prefixes` SET "
    "`expirable`=1,`updated_at`=?1 WHERE " STORESCHEMA_MIG_KIDS;
static const char storeschema_mig_nodes[] = "UPDATE `prefixes` SET "
    "`expirable`=1,`updated_at`=?1 WHERE " STORESCHEMA_MIG_NODES;
/* How many rows those would change: a file without any opens without a
 * write lock. */
static const char storeschema_mig_count[] = "SELECT (SELECT count(*) FROM "
    "`prefixes` WHERE " STORESCHEMA_MIG_KIDS ") + (SELECT count(*) FROM "
    "`prefixes` WHERE " STORESCHEMA_MIG_NODES ")";

/* Runs one statement of SQL text that returns no rows we need. */
int
storeschema_exec(struct store *st, const char *sql, const char *what, char *err,
    size_t errlen)
{
	if (sqlite3_exec(st->db, sql, NULL, NULL, NULL) != SQLITE_OK) {
		errbuf_set(err, errlen, "%s: %s: %s", st->path, what,
		    sqlite3_errmsg(st->db));
		return -1;
	}
	return 0;
}

/*
 * Runs a query returning one integer (count(*) and the like) into *val on
 * db, a connection to path; arg binds ?1 unless NULL. Returns 0 or -1 with
 * err set.
 */
int
storeschema_query_int(sqlite3 *db, const char *path, const char *sql,
    const char *arg, int64_t *val, char *err, size_t errlen)
{
	sqlite3_stmt *s = NULL;
	int rc;

	rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
	if (rc != SQLITE_OK)
		goto fail;
	if (arg != NULL)
		sqlite3_bind_text(s, 1, arg, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW)
		goto fail;
	*val = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return 0;
fail:
	if ((rc & 0xff) == SQLITE_NOTADB || (rc & 0xff) == SQLITE_CORRUPT)
		errbuf_set(err, errlen,
		    "%s: not a usable sqlite database (%s); left untouched",
		    path, sqlite3_errmsg(db));
	else
		errbuf_set(err, errlen, "%s: cannot read schema: %s", path,
		    sqlite3_errmsg(db));
	sqlite3_finalize(s);
	return -1;
}

/*
 * Checks the schema of an existing database without writing anything.
 * Sets *create when the database is empty (no table at all) and the schema
 * must be made; sets st->upgrade when one of Meridio's indexes is missing.
 * Refuses a database with other tables but no `prefixes`, or a
 * `prefixes` lacking a column or keyed on something else than `id`.
 */
int
storeschema_check(struct store *st, bool *create, char *err, size_t errlen)
{
	int64_t n;
	size_t i;

	*create = false;
	if (storeschema_query_int(st->db, st->path,
	    "SELECT count(*) FROM sqlite_master "
	    "WHERE type='table' AND name='prefixes'", NULL, &n, err, errlen) <
	    0)
		return -1;
	if (n == 0) {
		if (storeschema_query_int(st->db, st->path,
		    "SELECT count(*) FROM sqlite_master", NULL, &n, err, errlen)
		    < 0)
			return -1;
		if (n != 0) {
			errbuf_set(err, errlen, "%s: has no table `prefixes` "
			    "(not a Meridio IPAM database?); left untouched",
			    st->path);
			return -1;
		}
		*create = true;
		return 0;
	}
	for (i = 0; i < STORESCHEMA_NCOLS; i++) {
		if (storeschema_query_int(st->db, st->path,
		    "SELECT count(*) FROM "
		    "pragma_table_info('prefixes') WHERE name=?1",
		    storeschema_columns[i].name, &n, err, errlen) < 0)
			return -1;
		if (n == 0 && storeschema_columns[i].ddl != NULL) {
			st->add_cols |= 1u << i;
		} else if (n == 0) {
			errbuf_set(err, errlen, "%s: table `prefixes` has no "
			    "column `%s` (not a Meridio IPAM database?); left "
			    "untouched", st->path, storeschema_columns[i].name);
			return -1;
		}
	}
	if (storeschema_query_int(st->db, st->path, "SELECT count(*) FROM "
	    "pragma_table_info('prefixes') WHERE pk>0 AND name<>?1", "id", &n,
	    err, errlen) < 0)
		return -1;
	if (n != 0) {
		errbuf_set(err, errlen,
		    "%s: table `prefixes` has another primary "
		    "key than `id`; left untouched", st->path);
		return -1;
	}
	/* Damaged pages are looked for by store_open (store_verify). */
	for (i = 0; i < sizeof(storeschema_indexes) /
	    sizeof(storeschema_indexes[0]); i++) {
		if (storeschema_query_int(st->db, st->path,
		    "SELECT count(*) FROM sqlite_master "
		    "WHERE type='index' AND name=?1", storeschema_indexes[i],
		    &n, err, errlen) < 0)
			return -1;
		if (n == 0) {
			st->upgrade = true;
			st->mig.indexes++;
		}
	}
	return 0;
}

/* Runs one of the migrate() updates with updated_at = now; adds the rows
 * it changed to *count. */
static int
storeschema_mig_update(struct store *st, const char *sql, int64_t now,
    int64_t *count, char *err, size_t errlen)
{
	sqlite3_stmt *s = NULL;
	char t[GOTEXT_TIME_STRLEN];

	gotext_format_time(now, t);
	if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK ||
	    (sqlite3_bind_text(s, 1, t, -1, SQLITE_STATIC), 0) ||
	    sqlite3_step(s) != SQLITE_DONE) {
		errbuf_set(err, errlen, "%s: migrate: %s; left untouched",
		    st->path, sqlite3_errmsg(st->db));
		sqlite3_finalize(s);
		return -1;
	}
	*count += sqlite3_changes(st->db);
	sqlite3_finalize(s);
	return 0;
}

/*
 * Brings an older Meridio file to the current schema as Meridio's start-up
 * does (see struct store_migration), in one transaction that stays open:
 * store_begin commits it, store_close rolls it back. A file without
 * anything to do is only read, and nothing is reported. Dirty pages are
 * kept in memory until the commit (cache_spill off), so that readers
 * (store_verify's quick_check) are never locked out.
 */
int
storeschema_migrate(struct store *st, int64_t now, char *err, size_t errlen)
{
	int64_t n;
	size_t i;

	if (st->add_cols == 0) {
		if (storeschema_query_int(st->db, st->path,
		    storeschema_mig_count, NULL, &n, err, errlen) < 0)
			return -1;
		if (n == 0)
			return 0;
	}
	if (storeschema_exec(st, "PRAGMA cache_spill=OFF", "set cache_spill",
	    err, errlen) < 0 || storeschema_exec(st, "BEGIN IMMEDIATE",
	    "begin migration", err, errlen) < 0)
		return -1;
	for (i = 0; i < STORESCHEMA_NCOLS; i++) {
		if (!(st->add_cols & (1u << i)))
			continue;
		if (storeschema_exec(st, storeschema_columns[i].ddl,
		    "migrate: add column", err, errlen) < 0)
			goto rollback;
		st->mig.columns++;
	}
	if (st->mig.columns > 0) {
		if (storeschema_exec(st, storeschema_ddl_index,
		    "migrate: create indexes", err, errlen) < 0)
			goto rollback;
	}
	if (storeschema_mig_update(st, storeschema_mig_kids, now,
	    &st->mig.children, err, errlen) < 0 || storeschema_mig_update(st,
	    storeschema_mig_nodes, now, &st->mig.nodes, err, errlen) < 0)
		goto rollback;
	if (st->mig.columns == 0)
		st->mig.indexes = 0;	/* those come with the WAL switch */
	st->mig_found = true;
	st->mig_pending = true;
	return 0;
rollback:
	/* "migrate: create indexes: UNIQUE constraint failed" and the
	 * like: the file is refused as it is */
	if (strstr(err, "left untouched") == NULL) {
		char why[512];

		snprintf(why, sizeof(why), "%s", err);
		errbuf_set(err, errlen, "%s; left untouched", why);
	}
	sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

/* Commits a migration held open since store_open. */
int
storeschema_mig_commit(struct store *st, char *err, size_t errlen)
{
	if (!st->mig_pending)
		return 0;
	if (storeschema_exec(st, "COMMIT", "commit migration", err, errlen) < 0)
	    {
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
		st->mig_pending = false;
		return -1;
	}
	st->mig_pending = false;
	return storeschema_exec(st, "PRAGMA cache_spill=ON", "set cache_spill",
	    err, errlen);
}

/*
 * Switches the file to WAL and adds Meridio's missing indexes (and, for a
 * new file, the table). Runs outside any transaction.
 */
int
storeschema_setup(struct store *st, bool create, char *err, size_t errlen)
{
	sqlite3_stmt *s = NULL;
	const char *mode;
	bool wal;

	if (sqlite3_prepare_v2(st->db, "PRAGMA journal_mode=WAL", -1, &s,
	    NULL) != SQLITE_OK || sqlite3_step(s) != SQLITE_ROW) {
		errbuf_set(err, errlen, "%s: cannot switch to WAL: %s",
		    st->path, sqlite3_errmsg(st->db));
		sqlite3_finalize(s);
		return -1;
	}
	mode = (const char *)sqlite3_column_text(s, 0);
	wal = mode != NULL && strcmp(mode, "wal") == 0;
	sqlite3_finalize(s);
	if (!wal) {
		errbuf_set(err, errlen, "%s: cannot switch to WAL journal",
		    st->path);
		return -1;
	}
	if (storeschema_exec(st, "BEGIN IMMEDIATE", "begin", err, errlen) < 0)
		return -1;
	if (create && storeschema_exec(st, storeschema_ddl_table,
	    "create table", err, errlen) < 0)
		goto rollback;
	if (storeschema_exec(st, storeschema_ddl_index, "create indexes", err,
	    errlen) < 0)
		goto rollback;
	if (storeschema_exec(st, "COMMIT", "commit schema", err, errlen) < 0)
		goto rollback;
	st->upgrade = false;
	return 0;
rollback:
	if (!sqlite3_get_autocommit(st->db))
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}
