//! AQL parsing throughput (lexer + parser to an AST), for a point lookup, a filtered
//! sort with bind parameters, and a grouping with a subquery, so regressions show.
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

const QUERIES: &[(&str, &str)] = &[
    ("point", "FOR d IN users FILTER d._key == @key RETURN d"),
    (
        "filter_sort_limit",
        "FOR u IN users FILTER u.age >= @min AND u.active == true AND LIKE(u.name, 'A%') \
         SORT u.age DESC, u.name LIMIT 10, 20 RETURN { name: u.name, age: u.age }",
    ),
    (
        "collect_subquery",
        "FOR o IN orders LET items = (FOR i IN o.items FILTER i.qty > 0 RETURN i.price * i.qty) \
         COLLECT customer = o.customer AGGREGATE total = SUM(SUM(items)), n = COUNT(1) \
         SORT total DESC LIMIT 5 RETURN { customer, total, n }",
    ),
];

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("aql_parse");
    g.throughput(Throughput::Elements(1));
    for (name, text) in QUERIES {
        themis_aql::parser::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        g.bench_function(*name, |b| {
            b.iter(|| themis_aql::parser::parse(black_box(text)).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
