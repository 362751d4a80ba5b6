-- Certless police record tables, PostgreSQL. Read by certless_reader only.
CREATE TABLE IF NOT EXISTS households (
    id          text     PRIMARY KEY,
    head_id     char(18) NOT NULL,
    region_code char(6)  NOT NULL
);
CREATE TABLE IF NOT EXISTS persons (
    id_number     char(18) PRIMARY KEY,
    name          text     NOT NULL,
    sex           char(1)  NOT NULL CHECK (sex IN ('M', 'F')),
    birth_date    date     NOT NULL,
    household_id  text     NOT NULL,
    relation      text     NOT NULL,
    cancel_reason text     CHECK (cancel_reason IN ('death', 'emigration')),
    cancel_date   date,
    CHECK ((cancel_reason IS NULL) = (cancel_date IS NULL))
);
CREATE INDEX IF NOT EXISTS persons_household_idx ON persons (household_id);
CREATE TABLE IF NOT EXISTS kinship (
    person_id   char(18) NOT NULL,
    relative_id char(18) NOT NULL,
    relation    text     NOT NULL,
    PRIMARY KEY (person_id, relative_id)
);
CREATE TABLE IF NOT EXISTS former_names (
    person_id  char(18) NOT NULL,
    seq        integer  NOT NULL,
    name       text     NOT NULL,
    until_date date     NOT NULL,
    PRIMARY KEY (person_id, seq)
);
CREATE TABLE IF NOT EXISTS residences (
    person_id   char(18) NOT NULL,
    seq         integer  NOT NULL,
    region_code char(6)  NOT NULL,
    from_date   date     NOT NULL,
    to_date     date,
    PRIMARY KEY (person_id, seq)
);
CREATE TABLE IF NOT EXISTS criminal_records (
    person_id     char(18) NOT NULL,
    seq           integer  NOT NULL,
    offence       text     NOT NULL,
    court         text     NOT NULL,
    judgment_date date     NOT NULL,
    sentence      text     NOT NULL,
    PRIMARY KEY (person_id, seq)
);
