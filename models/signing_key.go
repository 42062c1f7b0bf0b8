package models

// signingKeysMigration is migration 13: the keys that sign derived tokens.
// Placeholder until the tokens work lands; it must stay valid SQL.
const signingKeysMigration = `SELECT 1;`
