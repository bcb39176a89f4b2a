//! The one table of what a response must never show: framework debug pages, SQL error text and
//! stack traces, file paths or framework internals.
//!
//! Defends the auditor against both of its failure modes: missing a real leak (the fragments
//! cover the common stacks, their ORMs and debug pages) and crying wolf (each fragment is a
//! piece of text an ordinary JSON error message does not contain, such as a traceback header or
//! a driver's exception class, never a bare word like "error" or "SQL").

/// What a leak shows, from the worst to the mildest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Leak {
    /// A framework debug page, interactive or not: debug mode is on where callers reach it.
    DebugPage,
    /// A database or ORM error: the caller's input reached a query, and the query's shape shows.
    Sql,
    /// A stack trace, a server file path or framework internals.
    Internals,
}

/// One recognisable fragment.
#[derive(Debug)]
pub(crate) struct Signature {
    pub(crate) leak: Leak,
    /// What it reveals, for the evidence ("the Werkzeug interactive debugger").
    pub(crate) what: &'static str,
    /// The text matched, case-sensitively; `{n}` stands for one or more ASCII digits.
    pub(crate) fragment: &'static str,
}

macro_rules! signatures {
    ($($leak:ident, $what:literal, $fragment:literal;)*) => {
        /// Every signature, worst kinds first so a page's first match names its worst leak.
        pub(crate) const SIGNATURES: &[Signature] = &[
            $(Signature { leak: Leak::$leak, what: $what, fragment: $fragment },)*
        ];
    };
}

signatures! {
    // Debug pages. Werkzeug's runs Python for whoever has (or guesses, or computes) its PIN.
    DebugPage, "the Werkzeug interactive debugger (remote code execution once the PIN is known)", "Werkzeug Debugger";
    DebugPage, "the Werkzeug interactive debugger (remote code execution once the PIN is known)", "?__debugger__=yes";
    DebugPage, "Django's debug page (DEBUG = True: settings, source and SQL)", "because you have <code>DEBUG = True</code>";
    DebugPage, "Django's debug 404 page (DEBUG = True: the URL map)", "Using the URLconf defined in <code>";
    DebugPage, "the Rails exception page (development mode)", "Action Controller: Exception caught";
    DebugPage, "Laravel's Ignition debug page", "laravel-ignition";
    DebugPage, "Laravel's Ignition debug page", "facade/ignition";
    DebugPage, "the Whoops debug page (PHP)", "Whoops! There was an error.";
    DebugPage, "an ASP.NET error page (YSOD)", "Server Error in '/' Application";
    DebugPage, "an ASP.NET error page (YSOD)", "An unhandled exception occurred during the execution of the current web request";

    // SQL: drivers, databases and ORMs.
    Sql, "an SQLite error", "sqlite3.OperationalError";
    Sql, "an SQLite error", "sqlite3.IntegrityError";
    Sql, "an SQLite error", "SQLITE_ERROR";
    Sql, "an SQLite error", "SQLite3::SQLException";
    Sql, "an SQLite error", "System.Data.SQLite.SQLiteException";
    Sql, "an SQLite error", "org.sqlite.SQLiteException";
    Sql, "an SQLite error", "unrecognized token: \"";
    Sql, "a PostgreSQL error", "syntax error at or near";
    Sql, "a PostgreSQL error", "unterminated quoted string at or near";
    Sql, "a PostgreSQL error", "invalid input syntax for type";
    Sql, "a PostgreSQL error", "psycopg2.";
    Sql, "a PostgreSQL error", "psycopg.errors.";
    Sql, "a PostgreSQL error", "asyncpg.exceptions.";
    Sql, "a PostgreSQL error", "org.postgresql.util.PSQLException";
    Sql, "a PostgreSQL error", "PG::SyntaxError";
    Sql, "a PostgreSQL error", "Npgsql.PostgresException";
    Sql, "a MySQL/MariaDB error", "You have an error in your SQL syntax";
    Sql, "a MySQL/MariaDB error", "corresponds to your MySQL server version";
    Sql, "a MySQL/MariaDB error", "corresponds to your MariaDB server version";
    Sql, "a MySQL/MariaDB error", "com.mysql.cj.jdbc.exceptions";
    Sql, "a MySQL/MariaDB error", "MySqlException";
    Sql, "a MySQL/MariaDB error", "pymysql.err.";
    Sql, "a MySQL/MariaDB error", "MySQLdb._exceptions";
    Sql, "a MySQL/MariaDB error", "Warning: mysql_";
    Sql, "an MSSQL error", "Unclosed quotation mark after the character string";
    Sql, "an MSSQL error", "System.Data.SqlClient.SqlException";
    Sql, "an MSSQL error", "Microsoft.Data.SqlClient.SqlException";
    Sql, "an MSSQL error", "[Microsoft][ODBC SQL Server Driver]";
    Sql, "an MSSQL error", "Microsoft OLE DB Provider for SQL Server";
    Sql, "an Oracle error", "ORA-{n}: ";
    Sql, "an Oracle error", "oracle.jdbc.";
    Sql, "an Oracle error", "quoted string not properly terminated";
    Sql, "an SQL error (PDO)", "SQLSTATE[";
    Sql, "an SQL error", "SQLSTATE";
    Sql, "an SQLAlchemy error", "sqlalchemy.exc.";
    Sql, "an SQLAlchemy error", "https://sqlalche.me/e/";
    Sql, "a Django ORM error", "django.db.utils.";
    Sql, "a Sequelize error", "SequelizeDatabaseError";
    Sql, "a Hibernate error", "org.hibernate.exception.";
    Sql, "a Hibernate error", "org.hibernate.QueryException";
    Sql, "a TypeORM error", "QueryFailedError";
    Sql, "a Laravel query error", "Illuminate\\Database\\QueryException";
    Sql, "an ActiveRecord error", "ActiveRecord::StatementInvalid";

    // Stack traces, paths and framework internals.
    Internals, "a Python traceback", "Traceback (most recent call last)";
    Internals, "a Python source path", ".py\", line {n}";
    Internals, "a Java stack trace", "\tat java.";
    Internals, "a Java stack trace", ".java:{n})";
    Internals, "a Java exception", "java.lang.";
    Internals, "Spring's Whitelabel error page", "Whitelabel Error Page";
    Internals, "a Spring stack trace", "org.springframework.";
    Internals, "a .NET stack trace", "   at System.";
    Internals, "a .NET stack trace", "   at Microsoft.AspNetCore.";
    Internals, "a .NET stack trace", "--- End of stack trace from previous location";
    Internals, "an Express stack trace", "at Layer.handle";
    Internals, "an Express stack trace", "node_modules/express";
    Internals, "a Node.js stack trace", "    at Object.";
    Internals, "a Node.js module path", "node_modules/";
    Internals, "a Go panic", "goroutine {n} [running]";
    Internals, "a Go panic", "panic: runtime error";
    Internals, "a Rust panic", "panicked at";
    Internals, "a Ruby backtrace", ".rb:{n}:in ";
    Internals, "a PHP error", "Fatal error: ";
    Internals, "a PHP stack trace", "Stack trace:\n#0 ";
    Internals, "a PHP stack trace", "Stack trace:<br />#0 ";
    Internals, "a PHP source path", ".php on line {n}";
    Internals, "a server file path", "/usr/lib/python";
    Internals, "a server file path", "/usr/local/lib/python";
    Internals, "a server file path", "/site-packages/";
    Internals, "a server file path", "/var/www/";
    Internals, "a server file path", "C:\\\\";
    Internals, "a framework name", "Werkzeug";
    Internals, "a framework name", "pydantic_core";
    Internals, "a framework name", "starlette.";
    Internals, "a framework name", "django.";
    Internals, "a framework name", "Express</";
}

/// One signature found in a body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Found {
    pub(crate) signature: &'static Signature,
    /// Byte offset of the match in the body.
    pub(crate) at: usize,
}

impl Found {
    /// About `width` characters of the body around the match, control characters flattened.
    pub(crate) fn excerpt(&self, body: &str, width: usize) -> String {
        let mut start = self.at.saturating_sub(width / 3);
        while !body.is_char_boundary(start) {
            start -= 1;
        }
        let text: String = body[start..]
            .chars()
            .take(width)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let cut = if start + text.len() < body.len() {
            "..."
        } else {
            ""
        };
        let lead = if start > 0 { "..." } else { "" };
        format!(
            "{lead}{}{cut}",
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        )
    }
}

/// The first match of each kind of leak in `body`, worst kind first.
pub(crate) fn scan(body: &str) -> Vec<Found> {
    let mut found: Vec<Found> = Vec::new();
    for signature in SIGNATURES {
        if found.iter().any(|f| f.signature.leak == signature.leak) {
            continue;
        }
        if let Some(at) = find(body, signature.fragment) {
            found.push(Found { signature, at });
        }
    }
    found
}

/// Where `pattern` first occurs in `hay`; `{n}` in the pattern matches one or more digits.
fn find(hay: &str, pattern: &str) -> Option<usize> {
    let parts: Vec<&str> = pattern.split("{n}").collect();
    let first = parts.first().copied().unwrap_or_default();
    let mut from = 0;
    while let Some(rel) = hay.get(from..)?.find(first) {
        let start = from + rel;
        if matches_rest(&hay[start + first.len()..], &parts[1..]) {
            return Some(start);
        }
        from = start + first.len().max(1);
        while !hay.is_char_boundary(from) {
            from += 1;
        }
    }
    None
}

/// Whether `text` starts with digits then `parts[0]`, digits then `parts[1]`, and so on.
fn matches_rest(text: &str, parts: &[&str]) -> bool {
    let Some((part, rest)) = parts.split_first() else {
        return true;
    };
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0
        && text[digits..].starts_with(part)
        && matches_rest(&text[digits + part.len()..], rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worst(body: &str) -> Option<Found> {
        scan(body).into_iter().next()
    }

    fn what(body: &str) -> Option<(Leak, &'static str)> {
        worst(body).map(|f| (f.signature.leak, f.signature.what))
    }

    #[test]
    fn each_stack_is_recognised() {
        let cases = [
            ("<title>OperationalError // Werkzeug Debugger</title>", Leak::DebugPage),
            ("<link href=\"?__debugger__=yes&amp;cmd=resource\">", Leak::DebugPage),
            ("You\u{2019}re seeing this error because you have <code>DEBUG = True</code> in your Django settings file.", Leak::DebugPage),
            ("<h1>Action Controller: Exception caught</h1>", Leak::DebugPage),
            ("<title>Whoops! There was an error.</title>", Leak::DebugPage),
            ("<h1>Server Error in '/' Application.</h1>", Leak::DebugPage),
            ("(sqlite3.OperationalError) unrecognized token: \"'x''\"", Leak::Sql),
            ("ERROR:  unterminated quoted string at or near \"'\"", Leak::Sql),
            ("You have an error in your SQL syntax; check the manual", Leak::Sql),
            ("Unclosed quotation mark after the character string ''.", Leak::Sql),
            ("ORA-01756: quoted string not properly terminated", Leak::Sql),
            ("SequelizeDatabaseError: near \"'\": syntax error", Leak::Sql),
            ("org.hibernate.exception.SQLGrammarException: could not extract", Leak::Sql),
            ("django.db.utils.ProgrammingError: relation", Leak::Sql),
            ("File \"/app/main.py\", line 42, in handler", Leak::Internals),
            ("\tat com.example.Api.get(Api.java:42)", Leak::Internals),
            ("<h1>Whitelabel Error Page</h1>", Leak::Internals),
            ("TypeError: x\n    at Layer.handle [as handle_request]", Leak::Internals),
            ("goroutine 37 [running]:\nmain.handler()", Leak::Internals),
            ("app/controllers/users_controller.rb:12:in `show'", Leak::Internals),
            ("Stack trace:\n#0 /srv/app/index.php(3): query()", Leak::Internals),
            ("thread 'main' panicked at src/main.rs:2:5", Leak::Internals),
        ];
        for (body, leak) in cases {
            assert_eq!(what(body).map(|w| w.0), Some(leak), "{body}");
        }
        // The worst kind is named first, and each kind once.
        let page = "<title>sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) // Werkzeug Debugger</title> Traceback (most recent call last)";
        let kinds: Vec<Leak> = scan(page).iter().map(|f| f.signature.leak).collect();
        assert_eq!(kinds, [Leak::DebugPage, Leak::Sql, Leak::Internals]);
    }

    #[test]
    fn ordinary_json_errors_do_not_match() {
        for body in [
            r#"{"type":"about:blank","title":"Bad Request","status":400,"detail":"The request body is not valid JSON (line 1, column 31)."}"#,
            r#"{"detail":[{"type":"uuid_parsing","loc":["path","id"],"msg":"Input should be a valid UUID, invalid character: expected an optional prefix of `urn:uuid:` followed by [0-9a-fA-F-], found `'` at 1","input":"1'","url":"https://errors.pydantic.dev/2.11/v/uuid_parsing"}]}"#,
            r#"{"detail":"Not authenticated"}"#,
            r#"{"message": "User not found", "status": "fail"}"#,
            r#"{"error":"SQL injection attempt blocked","code":"ORA-LIKE"}"#,
            r#"{"links":{"home":"/home/feed","next":"/items?page=2"}}"#,
            r#"{"detail":"Invalid input: syntax error in query string"}"#,
        ] {
            assert!(worst(body).is_none(), "{body}: {:?}", what(body));
        }
    }

    #[test]
    fn digit_placeholders_need_digits() {
        assert_eq!(find("x ORA-00933: y", "ORA-{n}: "), Some(2));
        assert_eq!(find("ORA-: and ORA-x: ", "ORA-{n}: "), None);
        assert_eq!(find("a.py\", line 7", ".py\", line {n}"), Some(1));
        assert_eq!(
            find("é goroutine 1 [running]", "goroutine {n} [running]"),
            Some(3)
        );
    }

    #[test]
    fn excerpts_centre_on_the_match() {
        let body = format!(
            "{}sqlite3.OperationalError: boom{}",
            "a".repeat(300),
            "b".repeat(300)
        );
        let found = worst(&body).unwrap();
        let text = found.excerpt(&body, 90);
        assert!(text.starts_with("...") && text.ends_with("..."), "{text}");
        assert!(text.contains("sqlite3.OperationalError: boom"), "{text}");
    }
}
