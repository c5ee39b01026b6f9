//! The small regex dialect filters accept after `=~` (`/^a.*z$/i`).
//!
//! Jayway hands the pattern to `java.util.regex` and asks for a whole-string match.
//! The asl crate takes no regex dependency, so this is a backtracking matcher for the
//! common subset: literals, `.`, classes (`[a-z]`, `[^0-9]`, `\d \w \s` and their
//! negations), groups `(...)` / `(?:...)`, alternation, greedy and lazy quantifiers
//! (`* + ? {n} {n,} {n,m}`), anchors `^ $`, and the `i` and `s` flags. It runs as a
//! Thompson NFA simulation: time linear in the subject, no recursion, so hostile
//! patterns and long strings cannot blow up.

use std::fmt;

const MAX_PATTERN_NESTING: usize = 32;
/// Counted repeats are expanded when compiling; this bounds the program size.
const MAX_PROGRAM: usize = 10_000;

/// A compiled pattern. Equality is by source text and flags.
#[derive(Clone)]
pub struct Regex {
    source: String,
    flags: String,
    prog: Vec<Inst>,
    icase: bool,
    dotall: bool,
}

impl PartialEq for Regex {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source && self.flags == other.flags
    }
}

impl fmt::Debug for Regex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}/{}", self.source, self.flags)
    }
}

#[derive(Clone, Debug)]
enum Item {
    Range(char, char),
    Digit(bool),
    Word(bool),
    Space(bool),
}

#[derive(Clone, Debug)]
enum Node {
    Char(char),
    Any,
    Class {
        items: Vec<Item>,
        negated: bool,
    },
    Start,
    End,
    Group(Vec<Vec<Node>>),
    Repeat {
        node: Box<Node>,
        min: u32,
        max: Option<u32>,
    },
}

impl Regex {
    /// Compiles `pattern` with Java-style flag letters (`i`, `s`; `m`, `u`, `x`, `d`
    /// are accepted and have no effect on whole-string matching of this subset).
    pub fn new(pattern: &str, flags: &str) -> Result<Regex, String> {
        for f in flags.chars() {
            if !matches!(f, 'i' | 's' | 'm' | 'u' | 'x' | 'd') {
                return Err(format!("unknown regex flag '{f}'"));
            }
        }
        let mut p = P {
            c: pattern.chars().collect(),
            i: 0,
        };
        let alt = p.alt(0)?;
        if p.i < p.c.len() {
            return Err(format!("unbalanced ')' at offset {}", p.i));
        }
        Ok(Regex {
            source: pattern.to_string(),
            flags: flags.to_string(),
            prog: compile(&alt)?,
            icase: flags.contains('i'),
            dotall: flags.contains('s'),
        })
    }

    /// True when the pattern matches all of `s` (Java's `Matcher.matches()`).
    pub fn is_full_match(&self, s: &str) -> bool {
        let input: Vec<char> = s.chars().collect();
        self.run(&input)
    }
}

struct P {
    c: Vec<char>,
    i: usize,
}

impl P {
    fn alt(&mut self, depth: usize) -> Result<Vec<Vec<Node>>, String> {
        if depth > MAX_PATTERN_NESTING {
            return Err("regex nests too deeply".into());
        }
        let mut alts = vec![self.seq(depth)?];
        while self.c.get(self.i) == Some(&'|') {
            self.i += 1;
            alts.push(self.seq(depth)?);
        }
        Ok(alts)
    }

    fn seq(&mut self, depth: usize) -> Result<Vec<Node>, String> {
        let mut seq = Vec::new();
        while let Some(&c) = self.c.get(self.i) {
            if c == '|' || c == ')' {
                break;
            }
            self.i += 1;
            let atom = match c {
                '.' => Node::Any,
                '^' => Node::Start,
                '$' => Node::End,
                '(' => {
                    if self.c.get(self.i) == Some(&'?') {
                        if self.c.get(self.i + 1) == Some(&':') {
                            self.i += 2;
                        } else {
                            return Err("only (?:...) groups are supported".into());
                        }
                    }
                    let g = self.alt(depth + 1)?;
                    if self.c.get(self.i) != Some(&')') {
                        return Err("unclosed '(' in regex".into());
                    }
                    self.i += 1;
                    Node::Group(g)
                }
                '[' => self.class()?,
                '\\' => self.escape(false)?,
                '*' | '+' | '?' | '{' => return Err(format!("nothing to repeat before '{c}'")),
                c => Node::Char(c),
            };
            let atom = self.quantified(atom)?;
            seq.push(atom);
        }
        Ok(seq)
    }

    fn quantified(&mut self, atom: Node) -> Result<Node, String> {
        let (min, max) = match self.c.get(self.i) {
            Some('*') => (0, None),
            Some('+') => (1, None),
            Some('?') => (0, Some(1)),
            Some('{') => {
                let start = self.i;
                let close = self.c[start..]
                    .iter()
                    .position(|&c| c == '}')
                    .ok_or("unclosed '{' in regex")?;
                let body: String = self.c[start + 1..start + close].iter().collect();
                let num = |s: &str| {
                    s.trim()
                        .parse::<u32>()
                        .map_err(|_| format!("bad repeat '{{{body}}}'"))
                };
                let (min, max) = match body.split_once(',') {
                    None => {
                        let n = num(&body)?;
                        (n, Some(n))
                    }
                    Some((a, b)) if b.trim().is_empty() => (num(a)?, None),
                    Some((a, b)) => (num(a)?, Some(num(b)?)),
                };
                if max.is_some_and(|m| m < min) {
                    return Err(format!("bad repeat '{{{body}}}'"));
                }
                self.i = start + close;
                (min, max)
            }
            _ => return Ok(atom),
        };
        self.i += 1;
        // Lazy and greedy find the same whole-string verdict; the marker is just skipped.
        if self.c.get(self.i) == Some(&'?') {
            self.i += 1;
        }
        if matches!(self.c.get(self.i), Some('*' | '+' | '?' | '{')) {
            return Err("repeated quantifier in regex".into());
        }
        Ok(Node::Repeat {
            node: Box::new(atom),
            min,
            max,
        })
    }

    fn escape(&mut self, in_class: bool) -> Result<Node, String> {
        let c = *self.c.get(self.i).ok_or("trailing '\\' in regex")?;
        self.i += 1;
        let class = |item| Node::Class {
            items: vec![item],
            negated: false,
        };
        Ok(match c {
            'd' => class(Item::Digit(true)),
            'D' => class(Item::Digit(false)),
            'w' => class(Item::Word(true)),
            'W' => class(Item::Word(false)),
            's' => class(Item::Space(true)),
            'S' => class(Item::Space(false)),
            'n' => Node::Char('\n'),
            't' => Node::Char('\t'),
            'r' => Node::Char('\r'),
            'f' => Node::Char('\u{c}'),
            c if c.is_ascii_alphanumeric() && !in_class => {
                return Err(format!("unsupported regex escape '\\{c}'"))
            }
            c => Node::Char(c),
        })
    }

    fn class(&mut self) -> Result<Node, String> {
        let negated = self.c.get(self.i) == Some(&'^');
        if negated {
            self.i += 1;
        }
        let mut items = Vec::new();
        let mut first = true;
        loop {
            let c = *self.c.get(self.i).ok_or("unclosed '[' in regex")?;
            if c == ']' && !first {
                self.i += 1;
                break;
            }
            first = false;
            self.i += 1;
            let lo = if c == '\\' {
                match self.escape(true)? {
                    Node::Char(ch) => ch,
                    Node::Class { items: mut it, .. } => {
                        items.append(&mut it);
                        continue;
                    }
                    _ => return Err("bad escape in regex class".into()),
                }
            } else {
                c
            };
            if self.c.get(self.i) == Some(&'-') && self.c.get(self.i + 1).is_some_and(|&n| n != ']')
            {
                self.i += 1;
                let mut hi = self.c[self.i];
                self.i += 1;
                if hi == '\\' {
                    hi = match self.escape(true)? {
                        Node::Char(ch) => ch,
                        _ => return Err("bad range in regex class".into()),
                    };
                }
                if hi < lo {
                    return Err(format!("bad range {lo}-{hi} in regex class"));
                }
                items.push(Item::Range(lo, hi));
            } else {
                items.push(Item::Range(lo, lo));
            }
        }
        Ok(Node::Class { items, negated })
    }
}

/// One instruction of the compiled program (a Thompson NFA).
#[derive(Clone, Debug)]
enum Inst {
    Char(char),
    Any,
    Class(Vec<Item>, bool),
    Start,
    End,
    Split(usize, usize),
    Jmp(usize),
    Match,
}

fn compile(alts: &[Vec<Node>]) -> Result<Vec<Inst>, String> {
    let mut prog = Vec::new();
    emit_alt(alts, &mut prog)?;
    prog.push(Inst::Match);
    Ok(prog)
}

fn push(prog: &mut Vec<Inst>, i: Inst) -> Result<usize, String> {
    if prog.len() >= MAX_PROGRAM {
        return Err(format!("regex expands to more than {MAX_PROGRAM} steps"));
    }
    prog.push(i);
    Ok(prog.len() - 1)
}

fn emit_alt(alts: &[Vec<Node>], prog: &mut Vec<Inst>) -> Result<(), String> {
    let mut jumps = Vec::new();
    for (i, seq) in alts.iter().enumerate() {
        if i + 1 < alts.len() {
            let split = push(prog, Inst::Split(0, 0))?;
            for n in seq {
                emit(n, prog)?;
            }
            jumps.push(push(prog, Inst::Jmp(0))?);
            let next = prog.len();
            prog[split] = Inst::Split(split + 1, next);
        } else {
            for n in seq {
                emit(n, prog)?;
            }
        }
    }
    let end = prog.len();
    for j in jumps {
        prog[j] = Inst::Jmp(end);
    }
    Ok(())
}

fn emit(n: &Node, prog: &mut Vec<Inst>) -> Result<(), String> {
    match n {
        Node::Char(c) => push(prog, Inst::Char(*c)).map(drop),
        Node::Any => push(prog, Inst::Any).map(drop),
        Node::Class { items, negated } => {
            push(prog, Inst::Class(items.clone(), *negated)).map(drop)
        }
        Node::Start => push(prog, Inst::Start).map(drop),
        Node::End => push(prog, Inst::End).map(drop),
        Node::Group(alts) => emit_alt(alts, prog),
        Node::Repeat { node, min, max } => {
            for _ in 0..*min {
                emit(node, prog)?;
            }
            match max {
                None => {
                    let split = push(prog, Inst::Split(0, 0))?;
                    emit(node, prog)?;
                    push(prog, Inst::Jmp(split))?;
                    let exit = prog.len();
                    prog[split] = Inst::Split(split + 1, exit);
                }
                Some(max) => {
                    let mut splits = Vec::new();
                    for _ in *min..*max {
                        splits.push(push(prog, Inst::Split(0, 0))?);
                        emit(node, prog)?;
                    }
                    let exit = prog.len();
                    for s in splits {
                        prog[s] = Inst::Split(s + 1, exit);
                    }
                }
            }
            Ok(())
        }
    }
}

fn fold(c: char) -> char {
    c.to_lowercase().next().unwrap_or(c)
}

impl Regex {
    /// Adds `pc` and everything reachable from it without consuming input. Iterative,
    /// and `seen` keeps each instruction once per position, which also ends empty loops.
    fn close(
        &self,
        pc: usize,
        at: usize,
        len: usize,
        list: &mut Vec<usize>,
        seen: &mut [usize],
        mark: usize,
    ) {
        let mut stack = vec![pc];
        while let Some(pc) = stack.pop() {
            if seen[pc] == mark {
                continue;
            }
            seen[pc] = mark;
            match &self.prog[pc] {
                Inst::Jmp(t) => stack.push(*t),
                Inst::Split(a, b) => {
                    stack.push(*b);
                    stack.push(*a);
                }
                Inst::Start => {
                    if at == 0 {
                        stack.push(pc + 1);
                    }
                }
                Inst::End => {
                    if at == len {
                        stack.push(pc + 1);
                    }
                }
                _ => list.push(pc),
            }
        }
    }

    fn run(&self, s: &[char]) -> bool {
        let n = self.prog.len();
        let mut seen = vec![usize::MAX; n];
        let mut cur = Vec::new();
        let mut next = Vec::new();
        self.close(0, 0, s.len(), &mut cur, &mut seen, 0);
        for (i, &c) in s.iter().enumerate() {
            next.clear();
            for &pc in &cur {
                let hit = match &self.prog[pc] {
                    Inst::Char(_) | Inst::Any | Inst::Class(..) => self.single(&self.prog[pc], c),
                    _ => false,
                };
                if hit {
                    self.close(pc + 1, i + 1, s.len(), &mut next, &mut seen, i + 1);
                }
            }
            std::mem::swap(&mut cur, &mut next);
            if cur.is_empty() {
                return false;
            }
        }
        cur.iter().any(|&pc| matches!(self.prog[pc], Inst::Match))
    }

    fn single(&self, n: &Inst, c: char) -> bool {
        match n {
            Inst::Char(x) => {
                if self.icase {
                    fold(*x) == fold(c)
                } else {
                    *x == c
                }
            }
            Inst::Any => self.dotall || c != '\n',
            Inst::Class(items, negated) => {
                let hit = items.iter().any(|it| match it {
                    Item::Range(lo, hi) => {
                        (*lo..=*hi).contains(&c)
                            || (self.icase
                                && ((*lo..=*hi).contains(&fold(c))
                                    || c.to_uppercase()
                                        .next()
                                        .is_some_and(|u| (*lo..=*hi).contains(&u))))
                    }
                    Item::Digit(yes) => c.is_ascii_digit() == *yes,
                    Item::Word(yes) => (c.is_ascii_alphanumeric() || c == '_') == *yes,
                    Item::Space(yes) => {
                        matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{b}' | '\u{c}') == *yes
                    }
                });
                hit != *negated
            }
            _ => false,
        }
    }
}
