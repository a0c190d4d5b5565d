//! Tamper evidence of the audit trail: recomputing the hash chain the database keeps over
//! `rollback_audit` (migrations/20261122000010_audit_chain.sql) and naming the first row
//! where it breaks. Used by `rollback-bot audit verify` and `check-config`.
//!
//! Each row stores its position (`chain_seq`), the previous row's hash and its own hash over
//! its content and that link; the chain's head records the last position and hash. A row
//! edited after it was written no longer matches its hash; a row removed leaves a gap or a
//! broken link; rows removed from the end leave the head ahead of the last row.

use std::fmt;

use futures::TryStreamExt as _;
use sqlx::PgPool;

/// The hash the first row links to.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("reading the audit trail: {0}")]
    Database(#[from] sqlx::Error),
}

/// One row as the verifier sees it: what is stored and the hash recomputed from its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainRow {
    pub id: i64,
    pub chain_seq: i64,
    pub prev_hash: String,
    pub hash: String,
    pub recomputed: String,
}

/// Where and how the chain is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Break {
    /// The row's content no longer matches its hash: it was edited after it was written.
    Edited { id: i64, seq: i64 },
    /// The row does not link to the row before it: that row was edited or removed.
    Unlinked { id: i64, seq: i64 },
    /// Positions are missing before this row: rows were removed.
    Gap { id: i64, seq: i64, expected: i64 },
    /// The head names a later position or another hash than the last row: rows were removed
    /// from the end (or the head was moved).
    Head { head_seq: i64, last_seq: i64 },
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Break::Edited { id, seq } => write!(
                f,
                "row #{id} (chain position {seq}): its content does not match its hash \
                 (edited after it was written)"
            ),
            Break::Unlinked { id, seq } => write!(
                f,
                "row #{id} (chain position {seq}): it does not link to the row before it \
                 (that row was edited or removed)"
            ),
            Break::Gap { id, seq, expected } => write!(
                f,
                "row #{id} (chain position {seq}): positions {expected} to {} are missing \
                 (rows were removed)",
                seq - 1
            ),
            Break::Head { head_seq, last_seq } => write!(
                f,
                "the chain's head is at position {head_seq} but the last row is at {last_seq} \
                 (rows were removed from the end)"
            ),
        }
    }
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Intact { rows: i64, head: String },
    Broken(Break),
}

/// Walks the chain row by row in position order (pure: the rows come from [`verify`]).
#[derive(Debug, Clone)]
pub struct ChainCheck {
    last_seq: i64,
    last_hash: String,
}

impl Default for ChainCheck {
    fn default() -> Self {
        ChainCheck {
            last_seq: 0,
            last_hash: GENESIS.to_owned(),
        }
    }
}

impl ChainCheck {
    /// Checks the next row; the first error is where the chain breaks.
    pub fn next(&mut self, row: &ChainRow) -> Result<(), Break> {
        let (id, seq) = (row.id, row.chain_seq);
        if seq != self.last_seq + 1 {
            return Err(Break::Gap {
                id,
                seq,
                expected: self.last_seq + 1,
            });
        }
        if row.prev_hash != self.last_hash {
            return Err(Break::Unlinked { id, seq });
        }
        if row.recomputed != row.hash {
            return Err(Break::Edited { id, seq });
        }
        self.last_seq = seq;
        self.last_hash.clone_from(&row.hash);
        Ok(())
    }

    /// After the last row: the head must name it.
    pub fn finish(self, head_seq: i64, head_hash: &str) -> Verdict {
        if head_seq != self.last_seq || head_hash != self.last_hash {
            return Verdict::Broken(Break::Head {
                head_seq,
                last_seq: self.last_seq,
            });
        }
        Verdict::Intact {
            rows: self.last_seq,
            head: self.last_hash,
        }
    }
}

/// Recomputes the whole chain in the database's own hash function and checks every link.
pub async fn verify(pool: &PgPool) -> Result<Verdict, AuditError> {
    // One snapshot for the rows and the head, so appends while we read do not look like a
    // broken head.
    let mut tx = pool.begin().await?;
    sqlx::query("set transaction isolation level repeatable read, read only")
        .execute(&mut *tx)
        .await?;
    let head = sqlx::query!("select seq, hash from rollback_audit_chain")
        .fetch_one(&mut *tx)
        .await?;
    let mut check = ChainCheck::default();
    {
        let mut rows = sqlx::query_as!(
            ChainRow,
            r#"select id, chain_seq, prev_hash, hash,
                   rollback_audit_row_hash(a) as "recomputed!"
               from rollback_audit a order by chain_seq"#
        )
        .fetch(&mut *tx);
        while let Some(row) = rows.try_next().await? {
            if let Err(broken) = check.next(&row) {
                return Ok(Verdict::Broken(broken));
            }
        }
    }
    tx.commit().await?;
    Ok(check.finish(head.seq, &head.hash))
}

/// Whether the connected role owns the audit trail (and so could disable its triggers):
/// true means `serve` is not separated from the schema owner.
pub async fn connected_role_owns_trail(pool: &PgPool) -> Result<bool, AuditError> {
    Ok(sqlx::query_scalar!(
        r#"select pg_has_role(relowner, 'MEMBER') as "owns!"
           from pg_class where oid = 'rollback_audit'::regclass"#
    )
    .fetch_one(pool)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<ChainRow> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let hash = format!("{seq:064}");
                let row = ChainRow {
                    id: seq * 10,
                    chain_seq: seq,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                    recomputed: hash.clone(),
                };
                prev = hash;
                row
            })
            .collect()
    }

    fn run(rows: &[ChainRow], head_seq: i64, head_hash: &str) -> Verdict {
        let mut check = ChainCheck::default();
        for row in rows {
            if let Err(b) = check.next(row) {
                return Verdict::Broken(b);
            }
        }
        check.finish(head_seq, head_hash)
    }

    #[test]
    fn an_intact_chain_and_an_empty_one_verify() {
        let rows = chain(3);
        assert_eq!(
            run(&rows, 3, &rows[2].hash),
            Verdict::Intact {
                rows: 3,
                head: rows[2].hash.clone()
            }
        );
        assert_eq!(
            run(&[], 0, GENESIS),
            Verdict::Intact {
                rows: 0,
                head: GENESIS.into()
            }
        );
    }

    #[test]
    fn each_kind_of_tampering_names_the_row() {
        let rows = chain(4);
        let head = rows[3].hash.clone();

        let mut edited = rows.clone();
        edited[1].recomputed = "f".repeat(64);
        assert_eq!(
            run(&edited, 4, &head),
            Verdict::Broken(Break::Edited { id: 20, seq: 2 })
        );

        let mut rehashed = rows.clone();
        rehashed[1].hash = "e".repeat(64);
        rehashed[1].recomputed = "e".repeat(64);
        assert_eq!(
            run(&rehashed, 4, &head),
            Verdict::Broken(Break::Unlinked { id: 30, seq: 3 })
        );

        let removed: Vec<_> = rows.iter().filter(|r| r.chain_seq != 2).cloned().collect();
        let verdict = run(&removed, 4, &head);
        assert_eq!(
            verdict,
            Verdict::Broken(Break::Gap {
                id: 30,
                seq: 3,
                expected: 2
            })
        );

        assert_eq!(
            run(&rows[..3], 4, &head),
            Verdict::Broken(Break::Head {
                head_seq: 4,
                last_seq: 3
            })
        );
        let Verdict::Broken(b) = verdict else {
            unreachable!()
        };
        assert_eq!(
            b.to_string(),
            "row #30 (chain position 3): positions 2 to 2 are missing (rows were removed)"
        );
    }
}
