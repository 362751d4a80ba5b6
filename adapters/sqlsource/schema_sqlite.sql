-- Certless police record tables, SQLite. Dates are 'YYYY-MM-DD' text.
CREATE TABLE IF NOT EXISTS households (
    id          TEXT NOT NULL PRIMARY KEY,
    head_id     TEXT NOT NULL,
    region_code TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS persons (
    id_number     TEXT NOT NULL PRIMARY KEY,
    name          TEXT NOT NULL,
    sex           TEXT NOT NULL CHECK (sex IN ('M', 'F')),
    birth_date    TEXT NOT NULL,
    household_id  TEXT NOT NULL,
    relation      TEXT NOT NULL,
    cancel_reason TEXT CHECK (cancel_reason IN ('death', 'emigration')),
    cancel_date   TEXT,
    CHECK ((cancel_reason IS NULL) = (cancel_date IS NULL))
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS persons_household_idx ON persons (household_id);
CREATE TABLE IF NOT EXISTS kinship (
    person_id   TEXT NOT NULL,
    relative_id TEXT NOT NULL,
    relation    TEXT NOT NULL,
    PRIMARY KEY (person_id, relative_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS former_names (
    person_id  TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    name       TEXT    NOT NULL,
    until_date TEXT    NOT NULL,
    PRIMARY KEY (person_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS residences (
    person_id   TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    region_code TEXT    NOT NULL,
    from_date   TEXT    NOT NULL,
    to_date     TEXT,
    PRIMARY KEY (person_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS criminal_records (
    person_id     TEXT    NOT NULL,
    seq           INTEGER NOT NULL,
    offence       TEXT    NOT NULL,
    court         TEXT    NOT NULL,
    judgment_date TEXT    NOT NULL,
    sentence      TEXT    NOT NULL,
    PRIMARY KEY (person_id, seq)
) WITHOUT ROWID;
