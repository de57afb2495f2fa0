//! Table-driven tests of the function library: each row is a function name,
//! its arguments as a JSON array, and the expected result as JSON (compared
//! exactly, so `2` and `2.0` differ: results must be normalised numbers).

use std::collections::HashSet;

use serde_json::Value;

use super::*;

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("bad JSON in test: {text}: {e}"))
}

fn run(name: &str, args: &str) -> Result<Value, QueryError> {
    let Value::Array(args) = parse(args) else {
        panic!("arguments of {name} must be a JSON array: {args}");
    };
    call(name, args)
}

fn check(cases: &[(&str, &str, &str)]) {
    for (name, args, expected) in cases {
        let got = run(name, args).unwrap_or_else(|e| panic!("{name}({args}) failed: {e}"));
        assert_eq!(got, parse(expected), "{name}({args})");
    }
}

/// For floating-point results that depend on summation order.
fn check_approx(cases: &[(&str, &str, f64)]) {
    for (name, args, expected) in cases {
        let got = run(name, args).unwrap_or_else(|e| panic!("{name}({args}) failed: {e}"));
        let got = got
            .as_f64()
            .unwrap_or_else(|| panic!("{name}({args}) = {got}, not a number"));
        assert!(
            (got - expected).abs() < 1e-9,
            "{name}({args}) = {got}, want {expected}"
        );
    }
}

#[test]
fn type_checks_and_casts() {
    check(&[
        ("TO_BOOL", "[null]", "false"),
        ("TO_BOOL", "[0]", "false"),
        ("TO_BOOL", "[-0.0]", "false"),
        ("TO_BOOL", "[\"\"]", "false"),
        ("TO_BOOL", "[\"0\"]", "true"),
        ("TO_BOOL", "[[]]", "true"),
        ("TO_BOOL", "[{}]", "true"),
        ("TO_NUMBER", "[null]", "0"),
        ("TO_NUMBER", "[true]", "1"),
        ("TO_NUMBER", "[\" 1.5 \"]", "1.5"),
        ("TO_NUMBER", "[\"foo\"]", "0"),
        ("TO_NUMBER", "[[\"3\"]]", "3"),
        ("TO_NUMBER", "[[1, 2]]", "0"),
        ("TO_NUMBER", "[2.0]", "2"),
        ("TO_NUMBER", "[9007199254740993]", "9007199254740993"),
        ("TO_STRING", "[null]", "\"\""),
        ("TO_STRING", "[true]", "\"true\""),
        ("TO_STRING", "[-1.23]", "\"-1.23\""),
        ("TO_STRING", "[0.0000002]", "\"2e-7\""),
        ("TO_STRING", "[[1, 2, 3]]", "\"[1,2,3]\""),
        (
            "TO_STRING",
            r#"[{"foo": "bar", "baz": null}]"#,
            r#""{\"foo\":\"bar\",\"baz\":null}""#,
        ),
        ("TO_ARRAY", "[null]", "[]"),
        ("TO_ARRAY", "[false]", "[false]"),
        ("TO_ARRAY", "[5]", "[5]"),
        ("TO_ARRAY", "[\"foo\"]", "[\"foo\"]"),
        ("TO_ARRAY", "[[1, 2, \"foo\"]]", "[1, 2, \"foo\"]"),
        (
            "TO_ARRAY",
            r#"[{"foo": 1, "bar": 2, "baz": [3, 4, 5]}]"#,
            "[1, 2, [3, 4, 5]]",
        ),
        ("TO_LIST", "[7]", "[7]"),
        ("IS_NULL", "[null]", "true"),
        ("IS_NULL", "[0]", "false"),
        ("IS_BOOL", "[false]", "true"),
        ("IS_BOOL", "[0]", "false"),
        ("IS_NUMBER", "[1.5]", "true"),
        ("IS_NUMBER", "[\"1\"]", "false"),
        ("IS_STRING", "[\"\"]", "true"),
        ("IS_STRING", "[null]", "false"),
        ("IS_ARRAY", "[[]]", "true"),
        ("IS_ARRAY", "[{}]", "false"),
        ("IS_LIST", "[[1]]", "true"),
        ("IS_OBJECT", "[{}]", "true"),
        ("IS_OBJECT", "[[]]", "false"),
        ("IS_DOCUMENT", "[{\"a\": 1}]", "true"),
        ("IS_DATESTRING", "[\"2015\"]", "true"),
        ("IS_DATESTRING", "[\"2015-10\"]", "true"),
        ("IS_DATESTRING", "[\"2015-02-31\"]", "true"),
        (
            "IS_DATESTRING",
            "[\"2014-05-07T14:19:09.522+01:00\"]",
            "true",
        ),
        ("IS_DATESTRING", "[\"2014-05-07Z\"]", "true"),
        ("IS_DATESTRING", "[\"yesterday\"]", "false"),
        ("IS_DATESTRING", "[\"2014-05-07T14\"]", "false"),
        ("IS_DATESTRING", "[1399472349522]", "false"),
        ("IS_KEY", "[\"abc-123_:.@()+,=;$!*'%\"]", "true"),
        ("IS_KEY", "[\"a/b\"]", "false"),
        ("IS_KEY", "[\"\"]", "false"),
        ("IS_KEY", "[\"ä\"]", "false"),
        ("IS_KEY", "[12]", "false"),
        ("TYPENAME", "[null]", "\"null\""),
        ("TYPENAME", "[true]", "\"bool\""),
        ("TYPENAME", "[-4.56]", "\"number\""),
        ("TYPENAME", "[\"123\"]", "\"string\""),
        ("TYPENAME", "[[]]", "\"array\""),
        ("TYPENAME", "[{\"foo\": null}]", "\"object\""),
    ]);
}

#[test]
fn string_functions() {
    check(&[
        ("CHAR_LENGTH", "[\"foo\"]", "3"),
        ("CHAR_LENGTH", "[\"电脑坏了\"]", "4"),
        ("CHAR_LENGTH", "[null]", "0"),
        ("CHAR_LENGTH", "[true]", "4"),
        ("CHAR_LENGTH", "[false]", "5"),
        ("CHAR_LENGTH", "[1.25]", "4"),
        ("CHAR_LENGTH", "[{\"foo\": \"bar\"}]", "13"),
        ("LENGTH", "[\"foobar\"]", "6"),
        ("LENGTH", "[\"🥑\"]", "1"),
        ("LENGTH", "[1234]", "4"),
        ("LENGTH", "[[1, 2, 3, 4, 5, 6, 7]]", "7"),
        ("LENGTH", "[false]", "0"),
        ("LENGTH", "[true]", "1"),
        ("LENGTH", "[null]", "0"),
        ("LENGTH", r#"[{"a": 1, "b": 2, "c": 3, "d": 4, "e": {"f": 5, "g": 6}}]"#, "5"),
        ("COUNT", "[[1, 2]]", "2"),
        ("CONCAT", "[\"foo\", \"bar\", \"baz\"]", "\"foobarbaz\""),
        ("CONCAT", "[1, 2, 3]", "\"123\""),
        ("CONCAT", "[null, false, 0, true, \"\"]", "\"false0true\""),
        ("CONCAT", "[[5, 6], {\"foo\": \"bar\"}]", r#""[5,6]{\"foo\":\"bar\"}""#),
        ("CONCAT", "[[\"foo\", null, \"bar\"]]", "\"foobar\""),
        ("CONCAT", "[null]", "\"\""),
        ("CONCAT_SEPARATOR", "[\", \", \"foo\", \"bar\", \"baz\"]", "\"foo, bar, baz\""),
        ("CONCAT_SEPARATOR", "[\", \", [1, 2, 3]]", "\"1, 2, 3\""),
        ("CONCAT_SEPARATOR", "[\", \", null, false, 0, true, \"\"]", "\"false, 0, true, \""),
        ("CONCAT_SEPARATOR", "[\"-\", [null, \"a\", null]]", "\"a\""),
        ("CONCAT_SEPARATOR", "[\"-\", [5, 6], \"x\"]", "\"[5,6]-x\""),
        ("CONTAINS", "[\"foobarbaz\", \"bar\"]", "true"),
        ("CONTAINS", "[\"foobarbaz\", \"horse\"]", "false"),
        ("CONTAINS", "[\"foobarbaz\", \"bar\", true]", "3"),
        ("CONTAINS", "[\"foobarbaz\", \"horse\", true]", "-1"),
        ("CONTAINS", "[\"ääbar\", \"bar\", true]", "2"),
        ("CONTAINS", "[\"abc\", \"\"]", "false"),
        ("CONTAINS", "[12345, 34]", "true"),
        ("FIND_FIRST", "[\"foobarbaz\", \"ba\"]", "3"),
        ("FIND_FIRST", "[\"foobarbaz\", \"ba\", 4]", "6"),
        ("FIND_FIRST", "[\"foobarbaz\", \"ba\", 0, 3]", "-1"),
        ("FIND_FIRST", "[\"foobarbaz\", \"ba\", 0, 4]", "3"),
        ("FIND_FIRST", "[\"foobarbaz\", \"\", 2]", "2"),
        ("FIND_FIRST", "[\"foobarbaz\", \"x\"]", "-1"),
        ("FIND_FIRST", "[\"aaa\", \"aa\", 1]", "1"),
        ("FIND_FIRST", "[\"abc\", \"b\", -1]", "-1"),
        ("FIND_LAST", "[\"foobarbaz\", \"ba\"]", "6"),
        ("FIND_LAST", "[\"foobarbaz\", \"ba\", 7]", "-1"),
        ("FIND_LAST", "[\"foobarbaz\", \"ba\", 0, 4]", "3"),
        ("FIND_LAST", "[\"foobarbaz\", \"\"]", "9"),
        ("FIND_LAST", "[\"foobarbaz\", \"\", 0, 4]", "5"),
        ("LEFT", "[\"foobar\", 3]", "\"foo\""),
        ("LEFT", "[\"foobar\", 10]", "\"foobar\""),
        ("LEFT", "[\"foobar\", -1]", "\"\""),
        ("RIGHT", "[\"foobar\", 3]", "\"bar\""),
        ("RIGHT", "[\"foobar\", 10]", "\"foobar\""),
        ("RIGHT", "[\"电脑坏了\", 2]", "\"坏了\""),
        ("LOWER", "[\"AVOcado\"]", "\"avocado\""),
        ("LOWER", "[null]", "\"\""),
        ("UPPER", "[\"AVOcado\"]", "\"AVOCADO\""),
        ("UPPER", "[\"straße\"]", "\"STRASSE\""),
        ("TRIM", "[\"  foo bar  \"]", "\"foo bar\""),
        ("TRIM", "[\"--==[foo-bar]==--\", \"-=[]\"]", "\"foo-bar\""),
        ("TRIM", "[\"  foobar\\t \\r\\n \"]", "\"foobar\""),
        ("TRIM", "[\";foo;bar;baz, \", \",; \"]", "\"foo;bar;baz\""),
        ("TRIM", "[\"  x  \", 1]", "\"x  \""),
        ("TRIM", "[\"  x  \", 2]", "\"  x\""),
        ("TRIM", "[\"  x  \", 7]", "\"x\""),
        ("LTRIM", "[\"  foo bar  \"]", "\"foo bar  \""),
        ("LTRIM", "[\"--==[foo-bar]==--\", \"-=[]\"]", "\"foo-bar]==--\""),
        ("RTRIM", "[\"  foo bar  \"]", "\"  foo bar\""),
        ("RTRIM", "[\"--==[foo-bar]==--\", \"-=[]\"]", "\"--==[foo-bar\""),
        ("SUBSTRING", "[\"Holy Guacamole!\", 5]", "\"Guacamole!\""),
        ("SUBSTRING", "[\"Holy Guacamole!\", 10, 4]", "\"mole\""),
        ("SUBSTRING", "[\"Holy Guacamole!\", -5, 4]", "\"mole\""),
        ("SUBSTRING", "[\"Holy Guacamole!\", 100]", "\"\""),
        ("SUBSTRING", "[\"Holy Guacamole!\", -100, 4]", "\"Holy\""),
        ("SUBSTRING", "[\"Holy Guacamole!\", 0, -2]", "\"\""),
        ("SUBSTRING", "[\"电脑坏了\", 1, 2]", "\"脑坏\""),
        ("SPLIT", "[\"foo-bar-baz\", \"-\"]", "[\"foo\", \"bar\", \"baz\"]"),
        ("SPLIT", "[\"foo-bar-baz\", \"-\", 1]", "[\"foo\"]"),
        ("SPLIT", "[\"foo, bar & baz\", [\", \", \" & \"]]", "[\"foo\", \"bar\", \"baz\"]"),
        ("SPLIT", "[\"abc\", \"\"]", "[\"a\", \"b\", \"c\"]"),
        ("SPLIT", "[\"abc\"]", "[\"abc\"]"),
        ("SPLIT", "[\"\", \"-\"]", "[\"\"]"),
        ("SPLIT", "[\"a-\", \"-\"]", "[\"a\", \"\"]"),
        ("SPLIT", "[\"a-b\", \"-\", 0]", "[]"),
        ("SPLIT", "[\"a-b\", \"-\", -1]", "null"),
        ("SPLIT", "[\"a-b\", {}]", "null"),
        ("SUBSTITUTE", "[\"the quick brown foxx\", \"quick\", \"lazy\"]", "\"the lazy brown foxx\""),
        ("SUBSTITUTE", "[\"the quick brown foxx\", [\"quick\", \"foxx\"], [\"slow\", \"dog\"]]", "\"the slow brown dog\""),
        ("SUBSTITUTE", "[\"the quick brown foxx\", [\"the\", \"foxx\"], [\"that\", \"dog\"], 1]", "\"that quick brown foxx\""),
        ("SUBSTITUTE", "[\"the quick brown foxx\", [\"the\", \"quick\", \"foxx\"], [\"A\", \"VOID!\"]]", "\"A VOID! brown \""),
        ("SUBSTITUTE", "[\"the quick brown foxx\", [\"quick\", \"foxx\"], \"xx\"]", "\"the xx brown xx\""),
        ("SUBSTITUTE", r#"["the quick brown foxx", {"quick": "small", "brown": "slow", "foxx": "ant"}]"#, "\"the small slow ant\""),
        ("SUBSTITUTE", r#"["the quick brown foxx", {"quick": "", "brown": null, "foxx": "ant"}]"#, "\"the   ant\""),
        ("SUBSTITUTE", r#"["the quick brown foxx", {"quick": "small", "brown": "slow", "foxx": "ant"}, 2]"#, "\"the small slow foxx\""),
        ("SUBSTITUTE", "[\"aaa\", \"a\"]", "\"\""),
        ("SUBSTITUTE", "[\"abc\", \"b\", \"x\", 0]", "\"abc\""),
        ("SUBSTITUTE", "[\"abc\", 5, \"x\"]", "null"),
        ("LIKE", "[\"cart\", \"ca_t\"]", "true"),
        ("LIKE", "[\"carrot\", \"ca_t\"]", "false"),
        ("LIKE", "[\"carrot\", \"ca%t\"]", "true"),
        ("LIKE", "[\"foo bar baz\", \"bar\"]", "false"),
        ("LIKE", "[\"foo bar baz\", \"%bar%\"]", "true"),
        ("LIKE", "[\"FoO bAr BaZ\", \"fOo%bAz\"]", "false"),
        ("LIKE", "[\"FoO bAr BaZ\", \"fOo%bAz\", true]", "true"),
        ("LIKE", "[\"a_b\", \"a\\\\_b\"]", "true"),
        ("REGEX_TEST", "[\"the quick brown fox\", \"the.*fox\"]", "true"),
        ("REGEX_TEST", "[\"the quick brown fox\", \"^(a|the)\\\\s+(quick|slow).*f.x$\"]", "true"),
        ("REGEX_TEST", "[\"the\\nquick\\nbrown\\nfox\", \"^the(\\n[a-w]+)+\\nfox$\"]", "true"),
        ("REGEX_TEST", "[\"ABC\", \"abc\"]", "false"),
        ("REGEX_TEST", "[\"ABC\", \"abc\", true]", "true"),
        ("REGEX_TEST", "[\"abc\", \"(\"]", "null"),
        ("REGEX_MATCHES", "[\"My-us3r_n4m3\", \"^[a-z0-9_-]{3,16}$\", true]", "[\"My-us3r_n4m3\"]"),
        ("REGEX_MATCHES", "[\"#4d82h4\", \"^#?([a-f0-9]{6}|[a-f0-9]{3})$\", true]", "null"),
        ("REGEX_MATCHES", "[\"john@doe.com\", \"^([a-z0-9_\\\\.-]+)@([\\\\da-z-]+)\\\\.([a-z\\\\.]{2,6})$\"]", "[\"john@doe.com\", \"john\", \"doe\", \"com\"]"),
        ("REGEX_MATCHES", "[\"ab\", \"(a)|(x)\"]", "[\"a\", \"a\", \"\"]"),
        ("REGEX_MATCHES", "[\"ab\", \"[\"]", "null"),
        ("REGEX_SPLIT", "[\"hypertext language, programming\", \"[\\\\s, ]+\"]", "[\"hypertext\", \"language\", \"programming\"]"),
        ("REGEX_SPLIT", "[\"Capture the article\", \"(the)\"]", "[\"Capture \", \"the\", \" article\"]"),
        ("REGEX_SPLIT", "[\"Don't capture the article\", \"the\"]", "[\"Don't capture \", \" article\"]"),
        ("REGEX_SPLIT", "[\"cA,Bc,A,BcA,BcA,Bc\", \"a,b\", true, 3]", "[\"c\", \"c,\", \"c\"]"),
        ("REGEX_SPLIT", "[\"abc\", \"\"]", "[\"a\", \"b\", \"c\"]"),
        ("REGEX_SPLIT", "[\"\", \"x\"]", "[\"\"]"),
        ("REGEX_SPLIT", "[\"abc\", \"(\"]", "null"),
        ("REGEX_REPLACE", "[\"the quick brown fox\", \"the.*fox\", \"jumped over\"]", "\"jumped over\""),
        ("REGEX_REPLACE", "[\"An Avocado\", \"a\", \"_\"]", "\"An Avoc_do\""),
        ("REGEX_REPLACE", "[\"An Avocado\", \"a\", \"_\", true]", "\"_n _voc_do\""),
        ("REGEX_REPLACE", "[\"2024-01-31\", \"(\\\\d+)-(\\\\d+)-(\\\\d+)\", \"${3}.${2}.${1}\"]", "\"31.01.2024\""),
        ("REGEX_REPLACE", "[\"abc\", \"(\", \"x\"]", "null"),
        ("REPEAT", "[\"foo\", 3]", "\"foofoofoo\""),
        ("REPEAT", "[\"foo\", 3, \" | \"]", "\"foo | foo | foo\""),
        ("REPEAT", "[5, 5]", "\"55555\""),
        ("REPEAT", "[\"foo\", 0]", "\"\""),
        ("REPEAT", "[\"foo\", -1]", "null"),
        ("REPEAT", "[\"foo\", 100000000]", "null"),
        ("REVERSE", "[\"foobar\"]", "\"raboof\""),
        ("REVERSE", "[\"电脑坏了\"]", "\"了坏脑电\""),
        ("REVERSE", "[[2, 4, 6, 8, 10]]", "[10, 8, 6, 4, 2]"),
        ("REVERSE", "[null]", "\"\""),
        ("STARTS_WITH", "[\"foobar\", \"foo\"]", "true"),
        ("STARTS_WITH", "[\"foobar\", \"baz\"]", "false"),
        ("STARTS_WITH", "[\"foobar\", [\"bar\", \"foo\"]]", "true"),
        ("STARTS_WITH", "[\"foobar\", [\"bar\", \"baz\"]]", "false"),
        ("STARTS_WITH", "[\"foobar\", [\"f\", \"fo\", \"x\"], 2]", "true"),
        ("STARTS_WITH", "[\"foobar\", [\"f\", \"x\"], 2]", "false"),
        ("MD5", "[\"foobar\"]", "\"3858f62230ac3c915f300c664312c63f\""),
        ("SHA1", "[\"foobar\"]", "\"8843d7f92416211de9ebb963ff4ce28125932878\""),
        ("SHA256", "[\"foobar\"]", "\"c3ab8ff13720e8ad9047dd39466b3c8974e592c2fa383d4a3960714caef0c4f2\""),
        ("SHA512", "[\"foobar\"]", "\"0a50261ebd1a390fed2bf326f2673c145582a6342d523204973d0219337f81616a8069b012587cf5635f6925f1b56c360230c19b273500ee013e030601bf2425\""),
        ("CRC32", "[\"123456789\"]", "\"E3069283\""),
        ("CRC32", "[\"foobar\"]", "\"D5F5C7F\""),
        ("FNV64", "[\"foobar\"]", "\"85944171F73967E8\""),
        ("FNV64", "[\"\"]", "\"CBF29CE484222325\""),
        ("TO_BASE64", "[\"ABC.\"]", "\"QUJDLg==\""),
        ("TO_BASE64", "[\"123456\"]", "\"MTIzNDU2\""),
        ("TO_BASE64", "[\"a\"]", "\"YQ==\""),
        ("TO_BASE64", "[\"\"]", "\"\""),
        ("TO_HEX", "[\"ABC.\"]", "\"4142432e\""),
        ("TO_HEX", "[\"ü\"]", "\"c3bc\""),
        ("ENCODE_URI_COMPONENT", "[\"fünf %\"]", "\"f%C3%BCnf%20%25\""),
        ("ENCODE_URI_COMPONENT", "[\"a-b_c.d!e~f*g'h(i)j\"]", "\"a-b_c.d!e~f*g'h(i)j\""),
        ("SOUNDEX", "[\"example\"]", "\"E251\""),
        ("SOUNDEX", "[\"ekzampul\"]", "\"E251\""),
        ("SOUNDEX", "[\"soundex\"]", "\"S532\""),
        ("SOUNDEX", "[\"sounteks\"]", "\"S532\""),
        ("SOUNDEX", "[\"Robert\"]", "\"R163\""),
        ("SOUNDEX", "[\"Ashcraft\"]", "\"A261\""),
        ("SOUNDEX", "[\"\"]", "\"\""),
        ("LEVENSHTEIN_DISTANCE", "[\"foobar\", \"bar\"]", "3"),
        ("LEVENSHTEIN_DISTANCE", "[\" \", \"\"]", "1"),
        ("LEVENSHTEIN_DISTANCE", "[\"der mötör trötet\", \"der trötet\"]", "6"),
        ("LEVENSHTEIN_DISTANCE", "[\"ab\", \"ba\"]", "1"),
        ("LEVENSHTEIN_DISTANCE", "[\"kitten\", \"sitting\"]", "3"),
        ("IPV4_TO_NUMBER", "[\"0.0.0.0\"]", "0"),
        ("IPV4_TO_NUMBER", "[\"8.8.8.8\"]", "134744072"),
        ("IPV4_TO_NUMBER", "[\"192.168.0.1\"]", "3232235521"),
        ("IPV4_TO_NUMBER", "[\"milk\"]", "null"),
        ("IPV4_FROM_NUMBER", "[0]", "\"0.0.0.0\""),
        ("IPV4_FROM_NUMBER", "[2130706433]", "\"127.0.0.1\""),
        ("IPV4_FROM_NUMBER", "[4294967295]", "\"255.255.255.255\""),
        ("IPV4_FROM_NUMBER", "[-23]", "null"),
        ("IPV4_FROM_NUMBER", "[4294967296]", "null"),
        ("IS_IPV4", "[\"127.0.0.1\"]", "true"),
        ("IS_IPV4", "[\"008.008.008.008\"]", "false"),
        ("IS_IPV4", "[\"12345.2.3.4\"]", "false"),
        ("IS_IPV4", "[\"12.34\"]", "false"),
        ("IS_IPV4", "[\"1.2.3.256\"]", "false"),
        ("IS_IPV4", "[8888]", "false"),
        ("TO_CHAR", "[216]", "\"Ø\""),
        ("TO_CHAR", "[129361]", "\"🥑\""),
        ("TO_CHAR", "[-1]", "null"),
        ("TO_CHAR", "[\"65\"]", "null"),
        ("JSON_STRINGIFY", "[true]", "\"true\""),
        ("JSON_STRINGIFY", "[\"abc\"]", r#""\"abc\"""#),
        ("JSON_STRINGIFY", "[[1, {\"2\": 0.5}]]", r#""[1,{\"2\":0.5}]""#),
        ("JSON_STRINGIFY", "[null]", "\"null\""),
        ("JSON_PARSE", "[\"123\"]", "123"),
        ("JSON_PARSE", "[\"[ true, false, null, -0.5 ]\"]", "[true, false, null, -0.5]"),
        ("JSON_PARSE", "[\"{\\\"a\\\": 1.0}\"]", "{\"a\": 1}"),
        ("JSON_PARSE", "[\"\\\"abc\\\"\"]", "\"abc\""),
        ("JSON_PARSE", "[\"abc\"]", "null"),
        ("JSON_PARSE", "[42]", "null"),
    ]);
}

#[test]
fn numeric_functions() {
    check(&[
        ("ABS", "[-5]", "5"),
        ("ABS", "[3.5]", "3.5"),
        ("ABS", "[\"-2\"]", "2"),
        ("ABS", "[null]", "0"),
        ("CEIL", "[2.49]", "3"),
        ("CEIL", "[-2.50]", "-2"),
        ("FLOOR", "[2.5]", "2"),
        ("FLOOR", "[-2.51]", "-3"),
        ("ROUND", "[2.49]", "2"),
        ("ROUND", "[2.50]", "3"),
        ("ROUND", "[-2.50]", "-2"),
        ("ROUND", "[-2.51]", "-3"),
        ("SQRT", "[9]", "3"),
        ("SQRT", "[2]", "1.4142135623730951"),
        ("SQRT", "[-1]", "null"),
        ("POW", "[2, 4]", "16"),
        ("POW", "[5, -1]", "0.2"),
        ("POW", "[5, 0]", "1"),
        ("POW", "[4096, 0.25]", "8"),
        ("POW", "[0, -1]", "null"),
        ("EXP", "[0]", "1"),
        ("EXP", "[1]", "2.718281828459045"),
        ("EXP2", "[16]", "65536"),
        ("LOG", "[2.718281828459045]", "1"),
        ("LOG", "[0]", "null"),
        ("LOG", "[-1]", "null"),
        ("LOG2", "[1024]", "10"),
        ("LOG2", "[0]", "null"),
        ("LOG10", "[10000]", "4"),
        ("LOG10", "[0]", "null"),
        ("SIN", "[0]", "0"),
        ("COS", "[0]", "1"),
        ("TAN", "[0]", "0"),
        ("ASIN", "[1]", "1.5707963267948966"),
        ("ASIN", "[2]", "null"),
        ("ACOS", "[1]", "0"),
        ("ACOS", "[2]", "null"),
        ("ATAN", "[0]", "0"),
        ("ATAN2", "[1, 1]", "0.7853981633974483"),
        ("ATAN2", "[0, 0]", "0"),
        ("RADIANS", "[180]", "3.141592653589793"),
        ("DEGREES", "[3.141592653589793]", "180"),
        ("PI", "[]", "3.141592653589793"),
        ("RANGE", "[1, 4]", "[1, 2, 3, 4]"),
        ("RANGE", "[1, 4, 2]", "[1, 3]"),
        ("RANGE", "[1, 4, 3]", "[1, 4]"),
        ("RANGE", "[1.5, 2.5]", "[1, 2]"),
        ("RANGE", "[1.5, 2.5, 1]", "[1.5, 2.5]"),
        ("RANGE", "[1.5, 2.5, 0.5]", "[1.5, 2, 2.5]"),
        ("RANGE", "[-0.75, 1.1, 0.5]", "[-0.75, -0.25, 0.25, 0.75]"),
        ("RANGE", "[4, 1]", "[4, 3, 2, 1]"),
        ("RANGE", "[4, 1, -2]", "[4, 2]"),
        ("RANGE", "[1, 4, 0]", "null"),
        ("RANGE", "[1, 4, -1]", "null"),
        ("SUM", "[[1, 2, 3, 4]]", "10"),
        ("SUM", "[[null, -5, 6]]", "1"),
        ("SUM", "[[]]", "0"),
        ("SUM", "[[1, \"2\"]]", "null"),
        ("SUM", "[\"12\"]", "null"),
        ("AVERAGE", "[[5, 2, 9, 2]]", "4.5"),
        ("AVERAGE", "[[-3, -5, 2]]", "-2"),
        ("AVERAGE", "[[999, 80, 4, 4, 4, 3, 3, 3]]", "137.5"),
        ("AVERAGE", "[[]]", "null"),
        ("AVERAGE", "[[null, null]]", "null"),
        ("AVG", "[[1, null, 3]]", "2"),
        ("MIN", "[[5, 9, -2, null, 1]]", "-2"),
        ("MIN", "[[null, null]]", "null"),
        ("MIN", "[[\"b\", 3, [], false]]", "false"),
        ("MIN", "[[]]", "null"),
        ("MIN", "[5]", "null"),
        ("MAX", "[[5, 9, -2, null, 1]]", "9"),
        ("MAX", "[[\"b\", 3, [], false]]", "[]"),
        ("MAX", "[[null]]", "null"),
        ("MEDIAN", "[[1, 2, 3]]", "2"),
        ("MEDIAN", "[[1, 2, 3, 4]]", "2.5"),
        ("MEDIAN", "[[4, 2, 3, 1]]", "2.5"),
        ("MEDIAN", "[[999, 80, 4, 4, 4, 3, 3, 3]]", "4"),
        ("MEDIAN", "[[null]]", "null"),
        ("PERCENTILE", "[[1, 2, 3, 4], 50]", "2"),
        ("PERCENTILE", "[[1, 2, 3, 4], 50, \"rank\"]", "2"),
        ("PERCENTILE", "[[1, 2, 3, 4], 50, \"interpolation\"]", "2.5"),
        ("PERCENTILE", "[[1, 2, 3, 4], 100]", "4"),
        ("PERCENTILE", "[[1, 2, 3, 4], 0]", "1"),
        ("PERCENTILE", "[[1, 2, 3, 4], 101]", "null"),
        ("PERCENTILE", "[[1, 2, 3, 4], 10, \"interpolation\"]", "1"),
        ("PERCENTILE", "[[1, 2, 3, 4], 95, \"interpolation\"]", "4"),
        ("PERCENTILE", "[[], 50]", "null"),
        ("PERCENTILE", "[[1, 2], 50, \"nearest\"]", "null"),
        ("PRODUCT", "[[1, 2, 3, 4]]", "24"),
        ("PRODUCT", "[[null, -5, 6]]", "-30"),
        ("PRODUCT", "[[]]", "1"),
        ("VARIANCE_SAMPLE", "[[7]]", "null"),
        ("VARIANCE_POPULATION", "[[]]", "null"),
        ("STDDEV_SAMPLE", "[[1]]", "null"),
        ("VARIANCE", "[[2, 2]]", "0"),
        ("STDDEV", "[[2, 4, 4, 4, 5, 5, 7, 9]]", "2"),
        ("COSINE_SIMILARITY", "[[0, 1], [1, 0]]", "0"),
        ("COSINE_SIMILARITY", "[[-1, 0], [1, 0]]", "-1"),
        ("COSINE_SIMILARITY", "[[1, 2], [1]]", "null"),
        ("COSINE_SIMILARITY", "[[0, 0], [1, 0]]", "null"),
        ("L1_DISTANCE", "[[-1, -1], [2, 2]]", "6"),
        (
            "L1_DISTANCE",
            "[[[1, 2, 3], [-1, -2, -3], [3, 4, 5], [-5, 2, 1]], [1, 1, 1]]",
            "[3, 9, 9, 7]",
        ),
        ("L1_DISTANCE", "[[1.5], [3]]", "1.5"),
        ("L1_DISTANCE", "[[\"a\"], [3]]", "null"),
        ("L2_DISTANCE", "[[1, 1], [5, 2]]", "4.123105625617661"),
        ("L2_DISTANCE", "[[0, 1], [1, 0]]", "1.4142135623730951"),
    ]);
    check_approx(&[
        ("VARIANCE_POPULATION", "[[1, 3, 6, 5, 2]]", 3.44),
        ("VARIANCE_SAMPLE", "[[1, 3, 6, 5, 2]]", 4.3),
        ("STDDEV_POPULATION", "[[1, 3, 6, 5, 2]]", 1.854723699099141),
        ("STDDEV_SAMPLE", "[[1, 3, 6, 5, 2]]", 2.0736441353327724),
        ("COS", "[1]", 0.5403023058681398),
        ("ATAN2", "[-10, 20]", -0.4636476090008061),
        ("LOG", "[10]", std::f64::consts::LN_10),
    ]);
    let cos = run(
        "COSINE_SIMILARITY",
        "[[[0,1,0,1],[1,0,0,1],[1,1,1,0],[0,0,0,1]], [1,1,1,1]]",
    )
    .ok()
    .and_then(|v| v.as_array().cloned())
    .unwrap_or_default();
    let cos: Vec<f64> = cos.iter().filter_map(Value::as_f64).collect();
    assert_eq!(cos.len(), 4);
    for (got, want) in cos.iter().zip([
        0.7071067811865475,
        0.7071067811865475,
        0.8660254037844387,
        0.5,
    ]) {
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }
}

#[test]
fn random_functions() {
    for _ in 0..100 {
        let r = run("RAND", "[]")
            .ok()
            .and_then(|v| v.as_f64())
            .unwrap_or(-1.0);
        assert!(r > 0.0 && r < 1.0, "{r}");
    }
    assert!(run("RANDOM", "[]").is_ok_and(|v| v.is_number()));
    let uuid = run("UUID", "[]")
        .ok()
        .and_then(|v| v.as_str().map(str::to_string));
    let uuid = uuid.unwrap_or_default();
    assert_eq!(uuid.len(), 36, "{uuid}");
    let dashes: Vec<usize> = uuid.match_indices('-').map(|(i, _)| i).collect();
    assert_eq!(dashes, [8, 13, 18, 23], "{uuid}");
    assert_eq!(&uuid[14..15], "4", "version 4: {uuid}");
    assert!("89ab".contains(&uuid[19..20]), "variant: {uuid}");
    assert_ne!(run("UUID", "[]").ok(), run("UUID", "[]").ok());
    let token = run("RANDOM_TOKEN", "[8]")
        .ok()
        .and_then(|v| v.as_str().map(str::to_string));
    let token = token.unwrap_or_default();
    assert_eq!(token.len(), 8);
    assert!(token.bytes().all(|c| c.is_ascii_alphanumeric()), "{token}");
    assert_eq!(run("RANDOM_TOKEN", "[0]").ok(), Some(parse("\"\"")));
    assert_eq!(run("RANDOM_TOKEN", "[-1]").ok(), Some(Value::Null));
    assert_eq!(run("RANDOM_TOKEN", "[65537]").ok(), Some(Value::Null));
}

#[test]
fn array_functions() {
    check(&[
        ("FIRST", "[[1, 2, 3]]", "1"),
        ("FIRST", "[[]]", "null"),
        ("FIRST", "[\"abc\"]", "null"),
        ("LAST", "[[1, 2, 3, 4, 5]]", "5"),
        ("LAST", "[[]]", "null"),
        ("NTH", "[[\"foo\", \"bar\", \"baz\"], 2]", "\"baz\""),
        ("NTH", "[[\"foo\", \"bar\", \"baz\"], 3]", "null"),
        ("NTH", "[[\"foo\", \"bar\", \"baz\"], -1]", "null"),
        ("NTH", "[null, 0]", "null"),
        ("PUSH", "[[1, 2, 3], 4]", "[1, 2, 3, 4]"),
        ("PUSH", "[[1, 2, 2, 3], 2, true]", "[1, 2, 2, 3]"),
        ("PUSH", "[null, 1]", "[1]"),
        ("PUSH", "[\"x\", 1]", "null"),
        ("POP", "[[1, 2, 3, 4]]", "[1, 2, 3]"),
        ("POP", "[[1]]", "[]"),
        ("POP", "[[]]", "[]"),
        ("POP", "[null]", "null"),
        ("APPEND", "[[1, 2, 3], [5, 6, 9]]", "[1, 2, 3, 5, 6, 9]"),
        (
            "APPEND",
            "[[1, 2, 3], [3, 4, 5, 2, 9], true]",
            "[1, 2, 3, 4, 5, 9]",
        ),
        ("APPEND", "[[1, 2], 3]", "[1, 2, 3]"),
        ("APPEND", "[[1, 2], null]", "[1, 2]"),
        ("APPEND", "[null, [1]]", "[1]"),
        ("APPEND", "[[1, 1], [], true]", "[1, 1]"),
        ("APPEND", "[5, [1]]", "null"),
        ("UNSHIFT", "[[1, 2, 3], 4]", "[4, 1, 2, 3]"),
        ("UNSHIFT", "[[1, 2, 3], 2, true]", "[1, 2, 3]"),
        ("UNSHIFT", "[null, 1]", "[1]"),
        ("SHIFT", "[[1, 2, 3, 4]]", "[2, 3, 4]"),
        ("SHIFT", "[[1]]", "[]"),
        ("SHIFT", "[null]", "null"),
        (
            "REMOVE_VALUE",
            "[[\"a\", \"b\", \"b\", \"a\", \"c\"], \"a\"]",
            "[\"b\", \"b\", \"c\"]",
        ),
        (
            "REMOVE_VALUE",
            "[[\"a\", \"b\", \"b\", \"a\", \"c\"], \"a\", 1]",
            "[\"b\", \"b\", \"a\", \"c\"]",
        ),
        ("REMOVE_VALUE", "[[1, 1.0, 2], 1]", "[2]"),
        ("REMOVE_VALUE", "[null, 1]", "[]"),
        (
            "REMOVE_VALUES",
            "[[\"a\", \"a\", \"b\", \"c\", \"d\", \"e\", \"f\"], [\"a\", \"f\", \"d\"]]",
            "[\"b\", \"c\", \"e\"]",
        ),
        ("REMOVE_VALUES", "[[1, 2], null]", "[1, 2]"),
        ("REMOVE_VALUES", "[[1, 2], 1]", "null"),
        (
            "REMOVE_NTH",
            "[[\"a\", \"b\", \"c\", \"d\", \"e\"], 1]",
            "[\"a\", \"c\", \"d\", \"e\"]",
        ),
        (
            "REMOVE_NTH",
            "[[\"a\", \"b\", \"c\", \"d\", \"e\"], -2]",
            "[\"a\", \"b\", \"c\", \"e\"]",
        ),
        ("REMOVE_NTH", "[[\"a\", \"b\"], 5]", "[\"a\", \"b\"]"),
        (
            "REPLACE_NTH",
            "[[\"a\", \"b\", \"c\"], 1, \"z\"]",
            "[\"a\", \"z\", \"c\"]",
        ),
        (
            "REPLACE_NTH",
            "[[\"a\", \"b\", \"c\"], 3, \"z\"]",
            "[\"a\", \"b\", \"c\", \"z\"]",
        ),
        (
            "REPLACE_NTH",
            "[[\"a\", \"b\", \"c\"], 6, \"z\", \"y\"]",
            "[\"a\", \"b\", \"c\", \"y\", \"y\", \"y\", \"z\"]",
        ),
        (
            "REPLACE_NTH",
            "[[\"a\", \"b\", \"c\"], -1, \"z\"]",
            "[\"a\", \"b\", \"z\"]",
        ),
        (
            "REPLACE_NTH",
            "[[\"a\", \"b\", \"c\"], -9, \"z\"]",
            "[\"z\", \"b\", \"c\"]",
        ),
        ("REPLACE_NTH", "[\"abc\", 1, \"z\"]", "null"),
        (
            "UNIQUE",
            "[[1, 2, 2, 3, 3, 3, 4, 4, 4, 4, 5]]",
            "[1, 2, 3, 4, 5]",
        ),
        (
            "UNIQUE",
            "[[1, 1.0, \"1\", [1], [1.0, null], {\"a\": null}, {}]]",
            "[1, \"1\", [1], {\"a\": null}]",
        ),
        ("UNIQUE", "[{}]", "null"),
        ("SORTED", "[[8, 4, 2, 10, 6]]", "[2, 4, 6, 8, 10]"),
        (
            "SORTED",
            "[[\"b\", null, 1, [], {}, true, \"a\"]]",
            "[null, true, 1, \"a\", \"b\", [], {}]",
        ),
        (
            "SORTED_UNIQUE",
            "[[8, 4, 2, 10, 6, 2, 8, 6, 4]]",
            "[2, 4, 6, 8, 10]",
        ),
        (
            "FLATTEN",
            "[[1, 2, [3, 4], 5, [6, 7], [8, [9, 10]]]]",
            "[1, 2, 3, 4, 5, 6, 7, 8, [9, 10]]",
        ),
        (
            "FLATTEN",
            "[[1, 2, [3, 4], 5, [6, 7], [8, [9, 10]]], 2]",
            "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]",
        ),
        ("FLATTEN", "[[[1], [[2]]], 0]", "[[1], [[2]]]"),
        ("FLATTEN", "[3]", "null"),
        ("SLICE", "[[1, 2, 3, 4, 5], 0, 1]", "[1]"),
        ("SLICE", "[[1, 2, 3, 4, 5], 1, 2]", "[2, 3]"),
        ("SLICE", "[[1, 2, 3, 4, 5], 3]", "[4, 5]"),
        ("SLICE", "[[1, 2, 3, 4, 5], 1, -1]", "[2, 3, 4]"),
        ("SLICE", "[[1, 2, 3, 4, 5], 0, -2]", "[1, 2, 3]"),
        ("SLICE", "[[1, 2, 3, 4, 5], -3, 2]", "[3, 4]"),
        ("SLICE", "[[1, 2, 3, 4, 5], 10]", "[]"),
        ("SLICE", "[[1, 2, 3], 2, -3]", "[]"),
        ("UNION", "[[1, 2, 3], [1, 2]]", "[1, 2, 3, 1, 2]"),
        ("UNION", "[[1], 2]", "null"),
        ("UNION_DISTINCT", "[[1, 2, 3], [1, 2]]", "[1, 2, 3]"),
        (
            "INTERSECTION",
            "[[1, 2, 3, 4, 5], [2, 3, 4, 5, 6], [3, 4, 5, 6, 7]]",
            "[3, 4, 5]",
        ),
        (
            "INTERSECTION",
            "[[2, 4, 6], [8, 10, 12], [14, 16, 18]]",
            "[]",
        ),
        ("INTERSECTION", "[[1, 1, 2], [1.0]]", "[1]"),
        (
            "MINUS",
            "[[1, 2, 3, 4], [3, 4, 5, 6], [5, 6, 7, 8]]",
            "[1, 2]",
        ),
        ("MINUS", "[[1, 1, 2], []]", "[1, 2]"),
        (
            "OUTERSECTION",
            "[[1, 2, 3], [2, 3, 4], [3, 4, 5]]",
            "[1, 5]",
        ),
        (
            "INTERLEAVE",
            "[[1, 1, 1], [2, 2, 2], [3, 3, 3]]",
            "[1, 2, 3, 1, 2, 3, 1, 2, 3]",
        ),
        (
            "INTERLEAVE",
            "[[1], [2, 2], [3, 3, 3]]",
            "[1, 2, 3, 2, 3, 3]",
        ),
        ("INTERLEAVE", "[[1], 2]", "null"),
        (
            "JACCARD",
            "[[1, 2, 3, 4], [3, 4, 5, 6]]",
            "0.3333333333333333",
        ),
        ("JACCARD", "[[1, 1, 2, 2, 2, 3], [2, 2, 3, 4]]", "0.5"),
        ("JACCARD", "[[1, 2, 3], []]", "0"),
        ("JACCARD", "[[], []]", "1"),
        ("POSITION", "[[2, 4, 6, 8], 4]", "true"),
        ("POSITION", "[[2, 4, 6, 8], 4, true]", "1"),
        ("POSITION", "[[2, 4, 6, 8], 5, true]", "-1"),
        ("POSITION", "[[2, 4, 6, 8], 5]", "false"),
        ("POSITION", "[\"abc\", \"b\"]", "null"),
        ("CONTAINS_ARRAY", "[[\"foo\", \"baz\"], \"baz\", true]", "1"),
        ("COUNT_DISTINCT", "[[1, 2, 3]]", "3"),
        (
            "COUNT_DISTINCT",
            "[[\"yes\", \"no\", \"yes\", \"sauron\", \"no\", \"yes\"]]",
            "3",
        ),
        ("COUNT_UNIQUE", "[[1, 1.0]]", "1"),
        ("COUNT_DISTINCT", "[null]", "null"),
    ]);
}

#[test]
fn object_functions() {
    let doc = r#"{"foo": {"bar": {"foo": 1, "baz": 2}, "baz": 3}, "baz": 4}"#;
    let with = |rest: &str| format!("[{doc}, {rest}]");
    check(&[
        (
            "ATTRIBUTES",
            r#"[{"foo": "bar", "_key": "123", "_custom": "yes"}]"#,
            r#"["foo", "_key", "_custom"]"#,
        ),
        (
            "ATTRIBUTES",
            r#"[{"foo": "bar", "_key": "123", "_custom": "yes"}, true]"#,
            r#"["foo"]"#,
        ),
        (
            "ATTRIBUTES",
            r#"[{"foo": "bar", "_key": "123", "_custom": "yes"}, false, true]"#,
            r#"["_custom", "_key", "foo"]"#,
        ),
        ("ATTRIBUTES", "[[1]]", "null"),
        (
            "KEYS",
            r#"[{"b": 1, "a": 2}, false, true]"#,
            r#"["a", "b"]"#,
        ),
        (
            "VALUES",
            r#"[{"_id": "users/jane", "name": "Jane", "age": 35}]"#,
            r#"["users/jane", "Jane", 35]"#,
        ),
        (
            "VALUES",
            r#"[{"_id": "users/jane", "name": "Jane", "age": 35}, true]"#,
            r#"["Jane", 35]"#,
        ),
        ("VALUES", "[null]", "null"),
        (
            "ENTRIES",
            r#"[{"foo": "bar", "number": 123}]"#,
            r#"[["foo", "bar"], ["number", 123]]"#,
        ),
        ("ENTRIES", "[[]]", "null"),
        ("HAS", r#"[{"name": "Jane"}, "name"]"#, "true"),
        ("HAS", r#"[{"name": "Jane"}, "age"]"#, "false"),
        ("HAS", r#"[{"name": null}, "name"]"#, "true"),
        ("HAS", r#"[{}, "name"]"#, "false"),
        ("HAS", r#"["name", "name"]"#, "false"),
        (
            "KEEP",
            &with("\"foo\""),
            r#"{"foo": {"bar": {"foo": 1, "baz": 2}, "baz": 3}}"#,
        ),
        ("KEEP", &with("\"bar\""), "{}"),
        ("KEEP", &with("\"foo\", \"baz\""), doc),
        ("KEEP", &with("[\"foo\", \"baz\"]"), doc),
        ("KEEP", "[5, \"a\"]", "null"),
        ("KEEP_RECURSIVE", &with("\"foo\""), r#"{"foo": {}}"#),
        ("KEEP_RECURSIVE", &with("\"baz\""), r#"{"baz": 4}"#),
        (
            "KEEP_RECURSIVE",
            &with("\"foo\", \"bar\""),
            r#"{"foo": {"bar": {"foo": 1}}}"#,
        ),
        (
            "KEEP_RECURSIVE",
            &with("[\"foo\", \"baz\"]"),
            r#"{"foo": {"baz": 3}, "baz": 4}"#,
        ),
        ("UNSET", &with("\"foo\""), r#"{"baz": 4}"#),
        ("UNSET", &with("\"bar\""), doc),
        ("UNSET", &with("\"foo\", \"baz\""), "{}"),
        ("UNSET", &with("[\"foo\", \"bar\"]"), r#"{"baz": 4}"#),
        ("UNSET_RECURSIVE", &with("\"foo\""), r#"{"baz": 4}"#),
        (
            "UNSET_RECURSIVE",
            &with("\"bar\""),
            r#"{"foo": {"baz": 3}, "baz": 4}"#,
        ),
        (
            "UNSET_RECURSIVE",
            &with("\"baz\""),
            r#"{"foo": {"bar": {"foo": 1}}}"#,
        ),
        (
            "UNSET_RECURSIVE",
            &with("[\"baz\"]"),
            r#"{"foo": {"bar": {"foo": 1}}}"#,
        ),
        (
            "MERGE",
            r#"[{"user1": {"name": "Jane"}}, {"user2": {"name": "Tom"}}]"#,
            r#"{"user1": {"name": "Jane"}, "user2": {"name": "Tom"}}"#,
        ),
        (
            "MERGE",
            r#"[{"users": {"name": "Jane"}}, {"users": {"name": "Tom"}}]"#,
            r#"{"users": {"name": "Tom"}}"#,
        ),
        (
            "MERGE",
            r#"[[{"foo": "bar"}, {"quux": "quetzalcoatl", "ruled": true}, {"bar": "baz", "foo": "done"}]]"#,
            r#"{"foo": "done", "quux": "quetzalcoatl", "ruled": true, "bar": "baz"}"#,
        ),
        ("MERGE", r#"[{"a": 1}]"#, r#"{"a": 1}"#),
        ("MERGE", r#"[{"a": 1}, 2]"#, "null"),
        (
            "MERGE_RECURSIVE",
            r#"[{"user-1": {"name": "Jane", "livesIn": {"city": "LA"}}}, {"user-1": {"age": 42, "livesIn": {"state": "CA"}}}]"#,
            r#"{"user-1": {"name": "Jane", "livesIn": {"city": "LA", "state": "CA"}, "age": 42}}"#,
        ),
        (
            "MERGE_RECURSIVE",
            r#"[[{"user-1": {"name": "Jane", "livesIn": {"city": "LA"}}}, {"user-1": {"age": 42, "livesIn": {"city": "NY"}}}]]"#,
            r#"{"user-1": {"name": "Jane", "livesIn": {"city": "NY"}, "age": 42}}"#,
        ),
        (
            "MERGE_RECURSIVE",
            r#"[{"a": {"b": 1}}, {"a": 2}]"#,
            r#"{"a": 2}"#,
        ),
        (
            "MATCHES",
            r#"[{"name": "jane", "age": 27, "active": true}, {"age": 27, "active": true}]"#,
            "true",
        ),
        (
            "MATCHES",
            r#"[{"test": 1}, [{"test": 1, "foo": "bar"}, {"foo": 1}, {"test": 1}], true]"#,
            "2",
        ),
        ("MATCHES", r#"[{"test": 1}, [{"test": 2}], true]"#, "-1"),
        ("MATCHES", r#"[{"a": 1}, {"b": null}]"#, "true"),
        ("MATCHES", r#"[{"a": 1}, {}]"#, "true"),
        ("MATCHES", r#"[{"a": 1}, []]"#, "null"),
        (
            "ZIP",
            r#"[["name", "active", "hobbies"], ["some user", true, ["swimming", "riding"]]]"#,
            r#"{"name": "some user", "active": true, "hobbies": ["swimming", "riding"]}"#,
        ),
        ("ZIP", r#"[["a"], [1, 2]]"#, "null"),
        ("ZIP", r#"[[1, 2], ["x", "y"]]"#, r#"{"1": "x", "2": "y"}"#),
        (
            "VALUE",
            r#"[{"foo": {"bar": "baz"}}, ["foo", "bar"]]"#,
            "\"baz\"",
        ),
        (
            "VALUE",
            r#"[{"foo": [{"bar": "baz"}, {"bar": {"inner": true}}]}, ["foo", 1, "bar"]]"#,
            r#"{"inner": true}"#,
        ),
        ("VALUE", r#"[{"foo": [1, 2]}, ["foo", -1]]"#, "2"),
        ("VALUE", r#"[{"foo": 1}, ["bar", "x"]]"#, "null"),
        ("VALUE", r#"[{"foo": 1}, []]"#, "null"),
        (
            "TRANSLATE",
            r#"["FR", {"US": "United States", "UK": "United Kingdom", "FR": "France"}]"#,
            "\"France\"",
        ),
        ("TRANSLATE", r#"[42, {"foo": "bar", "bar": "baz"}]"#, "42"),
        (
            "TRANSLATE",
            r#"[42, {"foo": "bar", "bar": "baz"}, "not found!"]"#,
            "\"not found!\"",
        ),
        ("TRANSLATE", r#"[42, {"42": true}]"#, "true"),
        (
            "PARSE_IDENTIFIER",
            "[\"_users/my-user\"]",
            r#"{"collection": "_users", "key": "my-user"}"#,
        ),
        (
            "PARSE_IDENTIFIER",
            r#"[{"_id": "mycollection/mykey", "value": "some value"}]"#,
            r#"{"collection": "mycollection", "key": "mykey"}"#,
        ),
        ("PARSE_COLLECTION", "[\"_users/my-user\"]", "\"_users\""),
        (
            "PARSE_KEY",
            r#"[{"_id": "mycollection/mykey"}]"#,
            "\"mykey\"",
        ),
        (
            "IS_SAME_COLLECTION",
            "[\"_users\", \"_users/my-user\"]",
            "true",
        ),
        (
            "IS_SAME_COLLECTION",
            r#"["_users", {"_id": "_users/my-user"}]"#,
            "true",
        ),
        (
            "IS_SAME_COLLECTION",
            "[\"_users\", \"foobar/baz\"]",
            "false",
        ),
        (
            "IS_SAME_COLLECTION",
            r#"["_users", {"_id": "something/else"}]"#,
            "false",
        ),
        ("IS_SAME_COLLECTION", r#"["_users", {"_key": "x"}]"#, "null"),
    ]);
    for bad in ["[\"no-slash\"]", "[42]", "[{\"_key\": \"k\"}]"] {
        let err = run("PARSE_IDENTIFIER", bad).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Runtime);
        assert!(err.message.contains("users/123"), "{}", err.message);
    }
}

#[test]
fn date_functions() {
    check(&[
        (
            "DATE_TIMESTAMP",
            "[\"2014-05-07T14:19:09.522\"]",
            "1399472349522",
        ),
        (
            "DATE_TIMESTAMP",
            "[\"2014-05-07T14:19:09.522Z\"]",
            "1399472349522",
        ),
        (
            "DATE_TIMESTAMP",
            "[\"2014-05-07 14:19:09.522\"]",
            "1399472349522",
        ),
        (
            "DATE_TIMESTAMP",
            "[\"2014-05-07 14:19:09.522Z\"]",
            "1399472349522",
        ),
        (
            "DATE_TIMESTAMP",
            "[2014, 5, 7, 14, 19, 9, 522]",
            "1399472349522",
        ),
        ("DATE_TIMESTAMP", "[1399472349522]", "1399472349522"),
        (
            "DATE_TIMESTAMP",
            "[\"2014-05-07T15:19:09.522+01:00\"]",
            "1399472349522",
        ),
        (
            "DATE_TIMESTAMP",
            "[\"2014-05-07T13:49:09.522-00:30\"]",
            "1399472349522",
        ),
        (
            "DATE_TIMESTAMP",
            "[\"2014-05-07T14:19:09.5229Z\"]",
            "1399472349522",
        ),
        (
            "DATE_TIMESTAMP",
            "[\"2014-05-07T14:19:09.5Z\"]",
            "1399472349500",
        ),
        ("DATE_TIMESTAMP", "[\"1970-01-01\"]", "0"),
        ("DATE_TIMESTAMP", "[\"1970\"]", "0"),
        ("DATE_TIMESTAMP", "[\"1970-02\"]", "2678400000"),
        ("DATE_TIMESTAMP", "[2016, 12, -1]", "null"),
        ("DATE_TIMESTAMP", "[2016, 2, 32]", "1456963200000"),
        ("DATE_TIMESTAMP", "[1970, 1, 1, 26]", "93600000"),
        ("DATE_TIMESTAMP", "[\"2015-13-01\"]", "null"),
        ("DATE_TIMESTAMP", "[\"not a date\"]", "null"),
        ("DATE_TIMESTAMP", "[null]", "null"),
        ("DATE_TIMESTAMP", "[253402300800000]", "null"),
        (
            "DATE_ISO8601",
            "[\"2014-05-07T14:19:09.522Z\"]",
            "\"2014-05-07T14:19:09.522Z\"",
        ),
        (
            "DATE_ISO8601",
            "[\"2014-05-07 14:19:09.522Z\"]",
            "\"2014-05-07T14:19:09.522Z\"",
        ),
        (
            "DATE_ISO8601",
            "[2014, 5, 7, 14, 19, 9, 522]",
            "\"2014-05-07T14:19:09.522Z\"",
        ),
        (
            "DATE_ISO8601",
            "[1399472349522]",
            "\"2014-05-07T14:19:09.522Z\"",
        ),
        ("DATE_ISO8601", "[0]", "\"1970-01-01T00:00:00.000Z\""),
        (
            "DATE_ISO8601",
            "[-62167219200000]",
            "\"0000-01-01T00:00:00.000Z\"",
        ),
        (
            "DATE_ISO8601",
            "[253402300799999]",
            "\"9999-12-31T23:59:59.999Z\"",
        ),
        ("DATE_ISO8601", "[-1]", "\"1969-12-31T23:59:59.999Z\""),
        (
            "DATE_ISO8601",
            "[\"2016-02-30\"]",
            "\"2016-03-01T00:00:00.000Z\"",
        ),
        ("DATE_ISO8601", "[true]", "null"),
        ("DATE_DAYOFWEEK", "[\"2020-08-29\"]", "6"),
        ("DATE_DAYOFWEEK", "[0]", "4"),
        ("DATE_DAYOFWEEK", "[\"2020-08-29\", \"UTC\"]", "6"),
        ("DATE_YEAR", "[\"2020-08-29\"]", "2020"),
        ("DATE_YEAR", "[0]", "1970"),
        ("DATE_MONTH", "[\"2020-08-29\"]", "8"),
        ("DATE_DAY", "[\"2020-08-29\"]", "29"),
        ("DATE_HOUR", "[\"2020-08-29T16:30:05.123\"]", "16"),
        ("DATE_HOUR", "[14400000]", "4"),
        ("DATE_HOUR", "[7200000]", "2"),
        ("DATE_HOUR", "[\"1970-01-01T02:00:00\"]", "2"),
        ("DATE_MINUTE", "[\"2020-08-29T16:30:05.123\"]", "30"),
        ("DATE_MINUTE", "[2520000]", "42"),
        ("DATE_SECOND", "[\"2020-08-29T16:30:05.123\"]", "5"),
        ("DATE_SECOND", "[1234567890]", "7"),
        ("DATE_MILLISECOND", "[\"2020-08-29T16:30:05.123\"]", "123"),
        ("DATE_MILLISECOND", "[1234567890]", "890"),
        ("DATE_DAYOFYEAR", "[\"2020-08-29\"]", "242"),
        ("DATE_DAYOFYEAR", "[86400000]", "2"),
        ("DATE_ISOWEEK", "[\"2020-08-29\"]", "35"),
        ("DATE_ISOWEEK", "[\"2023-01-01\"]", "52"),
        (
            "DATE_ISOWEEKYEAR",
            "[\"2023-01-01\"]",
            r#"{"week": 52, "year": 2022}"#,
        ),
        (
            "DATE_ISOWEEKYEAR",
            "[\"2019-12-30\"]",
            r#"{"week": 1, "year": 2020}"#,
        ),
        ("DATE_LEAPYEAR", "[\"2020-01-01\"]", "true"),
        ("DATE_LEAPYEAR", "[\"2021-01-01\"]", "false"),
        ("DATE_LEAPYEAR", "[\"2000-06-01\"]", "true"),
        ("DATE_LEAPYEAR", "[\"1900-06-01\"]", "false"),
        ("DATE_QUARTER", "[\"2020-08-29\"]", "3"),
        ("DATE_QUARTER", "[\"2020-12-31\"]", "4"),
        ("DATE_DAYS_IN_MONTH", "[\"2020-08-01\"]", "31"),
        ("DATE_DAYS_IN_MONTH", "[\"2020-09-01\"]", "30"),
        ("DATE_DAYS_IN_MONTH", "[\"2020-02-01\"]", "29"),
        ("DATE_DAYS_IN_MONTH", "[\"2021-02-01\"]", "28"),
        ("DATE_DAYS_IN_MONTH", "[3045600000]", "28"),
        (
            "DATE_TRUNC",
            "[\"2017-02-03\", \"month\"]",
            "\"2017-02-01T00:00:00.000Z\"",
        ),
        (
            "DATE_TRUNC",
            "[\"2017-02-03 04:05:06\", \"hours\"]",
            "\"2017-02-03T04:00:00.000Z\"",
        ),
        (
            "DATE_TRUNC",
            "[\"2023-03-25 23:00:00\", \"day\"]",
            "\"2023-03-25T00:00:00.000Z\"",
        ),
        (
            "DATE_TRUNC",
            "[\"2023-03-25 23:45:12.345\", \"y\"]",
            "\"2023-01-01T00:00:00.000Z\"",
        ),
        (
            "DATE_TRUNC",
            "[\"2023-03-25 23:45:12.345\", \"s\"]",
            "\"2023-03-25T23:45:12.000Z\"",
        ),
        ("DATE_TRUNC", "[\"2023-03-25\", \"fortnight\"]", "null"),
        (
            "DATE_ROUND",
            "[\"2000-04-28T11:11:11.111Z\", 1, \"day\"]",
            "\"2000-04-28T00:00:00.000Z\"",
        ),
        (
            "DATE_ROUND",
            "[\"2000-04-10T11:39:29Z\", 15, \"minutes\"]",
            "\"2000-04-10T11:30:00.000Z\"",
        ),
        (
            "DATE_ROUND",
            "[\"2023-03-25T23:55:55.555Z\", 1, \"day\"]",
            "\"2023-03-25T00:00:00.000Z\"",
        ),
        (
            "DATE_ROUND",
            "[\"2023-03-25T23:55:55.555Z\", 0, \"day\"]",
            "null",
        ),
        (
            "DATE_ROUND",
            "[\"2023-03-25T23:55:55.555Z\", 1, \"month\"]",
            "null",
        ),
        (
            "DATE_FORMAT",
            "[\"1969\", \"Summer of '%yy\"]",
            "\"Summer of '69\"",
        ),
        ("DATE_FORMAT", "[\"2016\", \"%%l = %l\"]", "\"%l = 1\""),
        ("DATE_FORMAT", "[\"2016-03-01\", \"%xxx%\"]", "\"061\""),
        (
            "DATE_FORMAT",
            "[\"2015-09-18T15:30:49.374Z\", \"%dd.%mm.%yyyy %hh:%ii:%ss,%fff\"]",
            "\"18.09.2015 15:30:49,374\"",
        ),
        (
            "DATE_FORMAT",
            "[\"2015-09-18T15:30:49.374Z\", \"%q/%yyyy\"]",
            "\"3/2015\"",
        ),
        (
            "DATE_FORMAT",
            "[\"2015-09-08\", \"%d.%m.%y %D\"]",
            "\"8.9.2015 8\"",
        ),
        (
            "DATE_FORMAT",
            "[\"2015-09-08\", \"%wwww %www %w, %mmmm %mmm\"]",
            "\"Tuesday Tue 2, September Sep\"",
        ),
        (
            "DATE_FORMAT",
            "[\"2015-09-08\", \"%yyyyyy|%kk|%k|%a|%x\"]",
            "\"+002015|37|37|30|251\"",
        ),
        (
            "DATE_FORMAT",
            "[0, \"%t %z\"]",
            "\"0 1970-01-01T00:00:00.000Z\"",
        ),
        (
            "DATE_FORMAT",
            "[\"2015-09-08\", \"%m%&month\"]",
            "\"9month\"",
        ),
        ("DATE_FORMAT", "[\"2015-09-08\", 5]", "null"),
        (
            "DATE_ADD",
            "[\"2015-04-01\", 5, \"years\"]",
            "\"2020-04-01T00:00:00.000Z\"",
        ),
        (
            "DATE_ADD",
            "[\"2015-04-01\", 61, \"months\"]",
            "\"2020-05-01T00:00:00.000Z\"",
        ),
        (
            "DATE_ADD",
            "[\"2016-02\", \"month\", 1]",
            "\"2016-03-01T00:00:00.000Z\"",
        ),
        (
            "DATE_ADD",
            "[\"2016-03-01\", -1, \"day\"]",
            "\"2016-02-29T00:00:00.000Z\"",
        ),
        (
            "DATE_ADD",
            "[\"2023-03-25T23:00:00.000Z\", 1, \"day\"]",
            "\"2023-03-26T23:00:00.000Z\"",
        ),
        (
            "DATE_ADD",
            "[\"2023-01-31\", 1, \"month\"]",
            "\"2023-03-03T00:00:00.000Z\"",
        ),
        (
            "DATE_ADD",
            "[\"2000-01-01\", 1.5, \"years\"]",
            "\"2001-07-01T00:00:00.000Z\"",
        ),
        (
            "DATE_ADD",
            "[\"2000-01-01\", 2, \"w\"]",
            "\"2000-01-15T00:00:00.000Z\"",
        ),
        (
            "DATE_ADD",
            "[\"2000-01-01\", \"90\", \"i\"]",
            "\"2000-01-01T01:30:00.000Z\"",
        ),
        (
            "DATE_ADD",
            "[0, 1500, \"f\"]",
            "\"1970-01-01T00:00:01.500Z\"",
        ),
        (
            "DATE_ADD",
            "[\"2000-01-01\", \"PT4H\"]",
            "\"2000-01-01T04:00:00.000Z\"",
        ),
        (
            "DATE_ADD",
            "[\"2000-01-01\", \"PT30M44.4S\"]",
            "\"2000-01-01T00:30:44.400Z\"",
        ),
        (
            "DATE_ADD",
            "[\"2000-01-01\", \"P1Y2M3W4DT5H6M7.89S\"]",
            "\"2001-03-26T05:06:07.890Z\"",
        ),
        (
            "DATE_ADD",
            "[\"2000-01-01\", \"P5DT26H\"]",
            "\"2000-01-07T02:00:00.000Z\"",
        ),
        ("DATE_ADD", "[\"2000-01-01\", \"P1H\"]", "null"),
        ("DATE_ADD", "[\"2000-01-01\", 1, \"fortnight\"]", "null"),
        ("DATE_ADD", "[\"9999-12-31\", 1, \"day\"]", "null"),
        (
            "DATE_SUBTRACT",
            "[\"2016-03-01\", 1, \"day\"]",
            "\"2016-02-29T00:00:00.000Z\"",
        ),
        (
            "DATE_SUBTRACT",
            "[\"2000-01-05\", \"P4D\"]",
            "\"2000-01-01T00:00:00.000Z\"",
        ),
        (
            "DATE_SUBTRACT",
            "[\"2000-01-01T02:00:00Z\", \"PT1H3M\"]",
            "\"2000-01-01T00:57:00.000Z\"",
        ),
        ("DATE_SUBTRACT", "[\"2000-01-01\", \"-P1Y\"]", "null"),
        (
            "DATE_SUBTRACT",
            "[\"2000-01-01\", -1, \"years\"]",
            "\"2001-01-01T00:00:00.000Z\"",
        ),
        (
            "DATE_DIFF",
            "[\"2023-12-01\", \"2024-04-01\", \"days\"]",
            "122",
        ),
        (
            "DATE_DIFF",
            "[\"2024-04-01\", \"2023-12-01\", \"d\"]",
            "-122",
        ),
        (
            "DATE_DIFF",
            "[\"2023-03-25T23:00:00.000Z\", \"2023-03-26T23:00:00.000Z\", \"hours\"]",
            "24",
        ),
        ("DATE_DIFF", "[0, 5400000, \"h\", true]", "1.5"),
        ("DATE_DIFF", "[0, 5400000, \"h\"]", "2"),
        ("DATE_DIFF", "[0, 3600000, \"h\", \"UTC\"]", "1"),
        (
            "DATE_DIFF",
            "[\"2000-01-01\", \"2010-01-01\", \"years\"]",
            "10",
        ),
        (
            "DATE_DIFF",
            "[\"2000-01-01\", \"2000-07-01\", \"months\"]",
            "6",
        ),
        (
            "DATE_DIFF",
            "[\"2000-01-01\", \"2000-01-15\", \"weeks\"]",
            "2",
        ),
        ("DATE_DIFF", "[0, 61000, \"s\"]", "61"),
        ("DATE_DIFF", "[0, 61000, \"i\", true]", "1.0166666666666666"),
        ("DATE_DIFF", "[0, 61000, \"f\"]", "61000"),
        ("DATE_DIFF", "[0, 61000, \"lightyears\"]", "null"),
        (
            "DATE_COMPARE",
            "[\"1985-04-04\", \"2023-04-04T10:00:00Z\", \"months\", \"days\"]",
            "true",
        ),
        (
            "DATE_COMPARE",
            "[\"2001-01-01T15:30:45.678Z\", \"2001-01-01T08:08:08.008Z\", \"years\", \"days\"]",
            "true",
        ),
        (
            "DATE_COMPARE",
            "[\"2001-01-01T15:30:45.678Z\", \"2001-01-01T08:08:08.008Z\", \"years\", \"hours\"]",
            "false",
        ),
        (
            "DATE_COMPARE",
            "[\"2001-01-01\", \"2002-01-01\", \"years\"]",
            "false",
        ),
        (
            "DATE_COMPARE",
            "[\"2001-01-01\", \"2002-01-01\", \"months\"]",
            "true",
        ),
        (
            "DATE_COMPARE",
            "[\"2001-01-01\", \"2002-01-01\", \"days\", \"years\"]",
            "null",
        ),
        (
            "DATE_COMPARE",
            "[\"2001-01-01\", \"2002-01-01\", \"months\", \"UTC\"]",
            "true",
        ),
        ("DATE_TIMEZONE", "[]", "\"UTC\""),
    ]);
    let now = run("DATE_NOW", "[]")
        .ok()
        .and_then(|v| v.as_i64())
        .unwrap_or(0);
    assert!(now > 1_700_000_000_000, "{now}");
    for (name, args) in [
        (
            "DATE_YEAR",
            "[\"2023-12-31T23:00:00.000Z\", \"Europe/Berlin\"]",
        ),
        (
            "DATE_ADD",
            "[\"2023-03-25\", 1, \"day\", \"Europe/Berlin\"]",
        ),
        ("DATE_FORMAT", "[0, \"%t\", \"America/New_York\"]"),
        ("DATE_DIFF", "[0, 1, \"f\", false, \"Asia/Kathmandu\"]"),
    ] {
        let err = run(name, args).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Runtime, "{name}");
        assert!(err.message.contains("UTC"), "{name}: {}", err.message);
    }
}

#[test]
fn misc_functions() {
    check(&[
        ("NOT_NULL", "[null, 2, 3]", "2"),
        ("NOT_NULL", "[null, null]", "null"),
        ("NOT_NULL", "[false, 1]", "false"),
        ("FIRST_LIST", "[1, null, [2], [3]]", "[2]"),
        ("FIRST_LIST", "[1, {}]", "null"),
        ("FIRST_DOCUMENT", "[[1], {\"a\": 1}, {}]", "{\"a\": 1}"),
        ("FIRST_DOCUMENT", "[null]", "null"),
        ("MIN_MATCH", "[true, false, true, 2]", "true"),
        ("MIN_MATCH", "[true, false, 0, 2]", "false"),
        ("MIN_MATCH", "[1, \"x\", 0]", "true"),
        ("IN_RANGE", "[5, 1, 10, true, true]", "true"),
        ("IN_RANGE", "[10, 1, 10, true, false]", "false"),
        ("IN_RANGE", "[1, 1, 10, false, true]", "false"),
        ("IN_RANGE", "[\"b\", \"a\", \"c\", true, true]", "true"),
        ("IN_RANGE", "[5, 1, 10, 1, true]", "null"),
        ("PASSTHRU", "[[1]]", "[1]"),
        ("NOOPT", "[3]", "3"),
        ("NOEVAL", "[\"x\"]", "\"x\""),
        ("ASSERT", "[true, \"fine\"]", "true"),
        ("WARN", "[0, \"zero\"]", "false"),
        ("WARN", "[1, \"one\"]", "true"),
        ("CHECK_DOCUMENT", "[{\"a\": 1}]", "true"),
        ("CHECK_DOCUMENT", "[[1]]", "false"),
        ("CALL", "[\"upper\", \"abc\"]", "\"ABC\""),
        ("CALL", "[\"CONCAT\", 1, 2, 3]", "\"123\""),
        (
            "APPLY",
            "[\"substring\", [\"Holy Guacamole!\", 5]]",
            "\"Guacamole!\"",
        ),
        ("APPLY", "[\"PI\"]", "3.141592653589793"),
        (
            "VERSION",
            "[]",
            &format!("\"{}\"", env!("CARGO_PKG_VERSION")),
        ),
    ]);
    assert_eq!(
        run("HASH", "[[1, {\"a\": 1.0}]]").ok(),
        run("HASH", "[[1.0, {\"a\": 1}]]").ok()
    );
    assert_ne!(run("HASH", "[\"1\"]").ok(), run("HASH", "[1]").ok());
    let h = run("HASH", "[\"abc\"]")
        .ok()
        .and_then(|v| v.as_u64())
        .unwrap_or(u64::MAX);
    assert!(h < (1 << 51), "{h}");

    let err = run("FAIL", "[\"boom\"]").unwrap_err();
    assert_eq!(
        (err.kind, err.message.as_str()),
        (ErrorKind::Runtime, "boom")
    );
    assert_eq!(run("FAIL", "[]").unwrap_err().kind, ErrorKind::Runtime);
    let err = run("ASSERT", "[false, \"x must be positive\"]").unwrap_err();
    assert_eq!(err.message, "x must be positive");
    let err = run("CALL", "[\"NO_SUCH_FN\"]").unwrap_err();
    assert_eq!(err.kind, ErrorKind::Runtime);
    assert!(
        err.message.contains("unknown function 'NO_SUCH_FN()'"),
        "{}",
        err.message
    );
    let err = run("CALL", "[\"LENGTH\", 1, 2]").unwrap_err();
    assert!(
        err.message.contains("LENGTH() takes 1 argument, got 2"),
        "{}",
        err.message
    );
    assert!(run("CALL", "[\"DOCUMENT\", \"users/1\"]").is_err());
    assert!(run("APPLY", "[\"CALL\", [\"PI\"]]").is_err());
    assert!(run("APPLY", "[\"PI\", 3]").is_err());
    assert!(run("CALL", "[42]").is_err());
}

#[test]
fn arity_and_registry() {
    assert_eq!(check_arity("LENGTH", 1), Ok(()));
    assert_eq!(
        check_arity("LENGTH", 2),
        Err("LENGTH() takes 1 argument, got 2".to_string())
    );
    assert_eq!(
        check_arity("PI", 1),
        Err("PI() takes no arguments, got 1".to_string())
    );
    assert_eq!(
        check_arity("POW", 3),
        Err("POW() takes 2 arguments, got 3".to_string())
    );
    assert_eq!(
        check_arity("SUBSTRING", 1),
        Err("SUBSTRING() takes 2 or 3 arguments, got 1".to_string())
    );
    assert_eq!(
        check_arity("DATE_ISO8601", 8),
        Err("DATE_ISO8601() takes 1 to 7 arguments, got 8".to_string())
    );
    assert_eq!(
        check_arity("CONCAT", 0),
        Err("CONCAT() takes at least 1 argument, got 0".to_string())
    );
    assert_eq!(
        check_arity("UNION", 1),
        Err("UNION() takes at least 2 arguments, got 1".to_string())
    );
    assert_eq!(check_arity("CONCAT", 50), Ok(()));
    let unknown = check_arity("FOO", 0).unwrap_err();
    assert_eq!(
        unknown,
        "unknown function 'FOO()': see docs/aql.md for the functions ThemisDB supports"
    );

    let err = call("FOO", vec![]).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Semantic);
    assert_eq!(err.message, unknown);
    let err = call("LENGTH", vec![]).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Semantic);
    assert_eq!(err.message, "LENGTH() takes 1 argument, got 0");

    let executor: Vec<&str> = EXECUTOR_DEFS.iter().map(|d| d.name).collect();
    assert_eq!(
        executor,
        [
            "COLLECTIONS",
            "COLLECTION_COUNT",
            "CURRENT_DATABASE",
            "CURRENT_USER",
            "DOCUMENT"
        ]
    );
    for name in executor {
        assert!(is_executor_function(name), "{name}");
        assert!(exists(name), "{name}");
        assert!(!is_deterministic(name), "{name}");
        let n = registry()[name].min_args;
        let err = call(name, vec![Value::Null; n]).unwrap_err();
        assert!(err.message.contains("executor"), "{name}: {}", err.message);
    }
    assert!(check_arity("DOCUMENT", 2).is_ok());
    assert!(check_arity("DOCUMENT", 3).is_err());

    for name in [
        "RAND",
        "RANDOM",
        "UUID",
        "DATE_NOW",
        "RANDOM_TOKEN",
        "FAIL",
        "NOOPT",
        "CALL",
        "APPLY",
    ] {
        assert!(exists(name), "{name}");
        assert!(
            !is_deterministic(name),
            "{name} must not be folded at plan time"
        );
    }
    for name in [
        "LENGTH",
        "CONCAT",
        "DATE_ISO8601",
        "MERGE",
        "SUM",
        "TO_NUMBER",
    ] {
        assert!(is_deterministic(name), "{name}");
    }
    assert!(!exists("length"), "names are upper-case");
    assert!(!is_deterministic("NO_SUCH_FN"));
}

#[test]
fn list_is_complete_and_consistent() {
    let all = list();
    assert!(all.len() >= 70, "only {} functions", all.len());
    let mut seen = HashSet::new();
    for (name, signature) in &all {
        assert!(seen.insert(*name), "{name} listed twice");
        assert!(exists(name), "{name}");
        assert_eq!(
            name.to_ascii_uppercase(),
            *name,
            "{name} must be upper-case"
        );
        assert!(
            signature.starts_with(&format!("{name}(")),
            "signature of {name} must start with its name: {signature}"
        );
        assert!(signature.contains('→'), "{name}: {signature}");
        assert!(!signature.contains('\n'), "{name}: one line");
    }
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "sorted by name");
    let required = [
        "TO_NUMBER",
        "TO_STRING",
        "TO_BOOL",
        "TO_ARRAY",
        "IS_NULL",
        "IS_BOOL",
        "IS_NUMBER",
        "IS_STRING",
        "IS_ARRAY",
        "IS_OBJECT",
        "TYPENAME",
        "CONCAT",
        "CONCAT_SEPARATOR",
        "LENGTH",
        "CHAR_LENGTH",
        "LOWER",
        "UPPER",
        "SUBSTRING",
        "LEFT",
        "RIGHT",
        "TRIM",
        "LTRIM",
        "RTRIM",
        "SPLIT",
        "CONTAINS",
        "LIKE",
        "REGEX_TEST",
        "REGEX_REPLACE",
        "REGEX_SPLIT",
        "REVERSE",
        "SUBSTITUTE",
        "STARTS_WITH",
        "FIND_FIRST",
        "FIND_LAST",
        "MD5",
        "SHA1",
        "SHA256",
        "JSON_STRINGIFY",
        "JSON_PARSE",
        "ABS",
        "CEIL",
        "FLOOR",
        "ROUND",
        "SQRT",
        "POW",
        "LOG",
        "LOG2",
        "LOG10",
        "EXP",
        "MIN",
        "MAX",
        "RAND",
        "RANGE",
        "FIRST",
        "LAST",
        "NTH",
        "PUSH",
        "POP",
        "APPEND",
        "UNSHIFT",
        "SHIFT",
        "REMOVE_VALUE",
        "UNIQUE",
        "SORTED",
        "SORTED_UNIQUE",
        "FLATTEN",
        "SLICE",
        "UNION",
        "UNION_DISTINCT",
        "INTERSECTION",
        "MINUS",
        "OUTERSECTION",
        "POSITION",
        "CONTAINS_ARRAY",
        "COUNT",
        "COUNT_DISTINCT",
        "MERGE",
        "MERGE_RECURSIVE",
        "UNSET",
        "KEEP",
        "HAS",
        "ATTRIBUTES",
        "VALUES",
        "ZIP",
        "ENTRIES",
        "SUM",
        "AVG",
        "AVERAGE",
        "MEDIAN",
        "PERCENTILE",
        "VARIANCE_POPULATION",
        "STDDEV_POPULATION",
        "DATE_NOW",
        "DATE_ISO8601",
        "DATE_TIMESTAMP",
        "DATE_YEAR",
        "DATE_MONTH",
        "DATE_DAY",
        "DATE_HOUR",
        "DATE_MINUTE",
        "DATE_SECOND",
        "DATE_ADD",
        "DATE_DIFF",
        "DATE_FORMAT",
        "UUID",
        "NOT_NULL",
        "FIRST_LIST",
        "FIRST_DOCUMENT",
        "DOCUMENT",
        "COLLECTION_COUNT",
    ];
    for name in required {
        assert!(seen.contains(name), "{name} is missing");
    }
}

#[test]
fn huge_arguments_neither_panic_nor_exhaust_memory() {
    check(&[
        ("REPEAT", "[\"\", 1000000000000000000]", "\"\""),
        ("REPEAT", "[\"\", 1000000000000000000, \",\"]", "null"),
        ("DATE_TIMESTAMP", "[2000, 1000000000000000000, 1]", "null"),
        (
            "DATE_TIMESTAMP",
            "[2000, 1, 9223372036854775807, 9223372036854775807]",
            "null",
        ),
        ("DATE_ADD", "[\"2000-01-01\", 1e300, \"years\"]", "null"),
        ("DATE_ADD", "[\"2000-01-01\", -1e18, \"months\"]", "null"),
        ("DATE_ADD", "[\"2000-01-01\", \"P999999999999Y\"]", "null"),
        ("SUBSTRING", "[\"abc\", 1e300, 1e300]", "\"\""),
        ("LEFT", "[\"abc\", -1e300]", "\"\""),
        ("NTH", "[[1], 1e300]", "null"),
        ("SLICE", "[[1, 2], -1e300, 1e300]", "[1, 2]"),
        ("TO_CHAR", "[1e300]", "null"),
    ]);
    let err = run("REPLACE_NTH", "[[], 1000000000000000, 1, 0]").unwrap_err();
    assert!(err.message.contains("too far"), "{}", err.message);
    assert!(run("RANGE", "[0, 1e15, 1]").is_err_and(|e| e.kind == ErrorKind::Limit));
    assert!(run("RANGE", "[0, 1e15]").is_err_and(|e| e.kind == ErrorKind::Limit));
}

#[test]
fn wrong_argument_types_give_null_not_errors() {
    // ArangoDB answers these with null and a warning; the query goes on.
    for (name, args) in [
        ("FIRST", "[{}]"),
        ("LAST", "[1]"),
        ("UNIQUE", "[\"abc\"]"),
        ("SORTED", "[null]"),
        ("FLATTEN", "[{}]"),
        ("SLICE", "[5, 1]"),
        ("MERGE", "[1, 2]"),
        ("ATTRIBUTES", "[\"x\"]"),
        ("ZIP", "[1, 2]"),
        ("SUM", "[{}]"),
        ("AVERAGE", "[[\"a\"]]"),
        ("MEDIAN", "[true]"),
        ("DATE_YEAR", "[{}]"),
        ("DATE_ADD", "[[], 1, \"day\"]"),
        ("REGEX_TEST", "[\"a\", \"a{2,1}\"]"),
        ("JSON_PARSE", "[\"{\"]"),
        ("IPV4_TO_NUMBER", "[12]"),
    ] {
        assert_eq!(run(name, args).ok(), Some(Value::Null), "{name}({args})");
    }
}

/// A fraction of any length is accepted; only its first three digits count (it once
/// overflowed an integer past 18 digits).
#[test]
fn long_date_fractions_do_not_overflow() {
    check(&[(
        "DATE_TIMESTAMP",
        "[\"2014-05-07T14:19:09.52234567890123456789012345Z\"]",
        "1399472349522",
    )]);
}
