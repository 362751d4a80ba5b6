package records

import "strings"

// Surnames in rough order of frequency in north-east China, with weights.
var surnames = []struct {
	name string
	w    int
}{
	{"王", 90}, {"李", 88}, {"张", 85}, {"刘", 70}, {"陈", 40}, {"杨", 38}, {"赵", 36},
	{"孙", 32}, {"于", 26}, {"高", 25}, {"徐", 22}, {"马", 22}, {"朱", 18}, {"郭", 18},
	{"周", 17}, {"吴", 16}, {"林", 14}, {"何", 12}, {"宋", 12}, {"韩", 12}, {"郑", 11},
	{"曹", 10}, {"冯", 10}, {"董", 10}, {"唐", 8}, {"许", 8}, {"曲", 8}, {"姜", 8},
	{"崔", 8}, {"邓", 7}, {"袁", 7}, {"彭", 7}, {"吕", 7}, {"苏", 7}, {"蒋", 6},
	{"田", 6}, {"贾", 6}, {"丁", 6}, {"魏", 6}, {"薛", 6}, {"付", 6}, {"常", 5},
	{"白", 5}, {"侯", 5}, {"邵", 5}, {"孟", 5}, {"秦", 5}, {"石", 5}, {"史", 5},
	{"谷", 4}, {"尹", 4}, {"关", 4}, {"潘", 4}, {"梁", 4}, {"宫", 3}, {"那", 3},
	{"佟", 3}, {"隋", 3}, {"鲍", 3}, {"范", 3}, {"方", 3}, {"金", 3}, {"任", 3},
}

// Korean-Chinese surnames, frequent in Yanbian and Changbai.
var koreanSurnames = []string{"金", "李", "朴", "崔", "郑", "姜", "赵", "张", "韩", "申", "玄", "许"}

var maleGiven = []rune("伟强磊军勇杰涛斌超明刚平辉鹏华飞鑫波宇浩凯健俊帆旭宁龙林阳建国峰亮成志海东文博晨瑞轩泽然睿宏兵春德福贵庆胜利永金山树权忠义")
var femaleGiven = []rune("芳娜敏静丽艳娟霞秀英玲桂兰燕萍红梅琳雪婷倩洁颖慧莉晶妍茜欣怡佳琪璐悦涵萱雨梓诗月丹凤云春玉珍淑荣")

var surnameCum = func() []int {
	c := make([]int, len(surnames))
	t := 0
	for i, s := range surnames {
		t += s.w
		c[i] = t
	}
	return c
}()

func (g *Generator) surname(county string) string {
	if (strings.HasPrefix(county, "2224") || county == "220623") && g.r.chance(0.4) {
		return pick(g.r, koreanSurnames)
	}
	return surnames[g.r.weighted(surnameCum)].name
}

func (g *Generator) given(sex string) string {
	pool := maleGiven
	if sex == "F" {
		pool = femaleGiven
	}
	if g.r.chance(0.35) {
		return string(pick(g.r, pool))
	}
	return string([]rune{pick(g.r, pool), pick(g.r, pool)})
}

// otherGiven returns a given name different from the one in full.
func (g *Generator) otherGiven(full, surname, sex string) string {
	for {
		n := surname + g.given(sex)
		if n != full {
			return n
		}
	}
}

var cnDigits = []string{"零", "一", "二", "三", "四", "五", "六", "七", "八", "九", "十"}

// cnNumber writes 1..99 in Chinese numerals.
func cnNumber(n int) string {
	switch {
	case n <= 10:
		return cnDigits[n]
	case n < 20:
		return "十" + cnDigits[n-10]
	case n%10 == 0:
		return cnDigits[n/10] + "十"
	default:
		return cnDigits[n/10] + "十" + cnDigits[n%10]
	}
}

type offence struct {
	name     string
	sentence func(g *Generator) string
	serious  bool
}

func months(g *Generator, lo, hi int) string {
	m := g.r.between(lo, hi)
	if m%12 == 0 {
		return cnNumber(m/12) + "年"
	}
	if m > 12 {
		return cnNumber(m/12) + "年" + cnNumber(m%12) + "个月"
	}
	return cnNumber(m) + "个月"
}

func fine(g *Generator) string {
	return "并处罚金人民币" + cnNumber(g.r.between(1, 9)) + "千元"
}

func prison(lo, hi int, probation float64) func(*Generator) string {
	return func(g *Generator) string {
		s := "有期徒刑" + months(g, lo, hi)
		if g.r.chance(probation) {
			s += "，缓刑" + months(g, 12, 36)
		}
		return s
	}
}

var offences = []offence{
	{"危险驾驶罪", func(g *Generator) string { return "拘役" + months(g, 1, 6) + "，" + fine(g) }, false},
	{"盗窃罪", prison(6, 36, 0.4), false},
	{"诈骗罪", prison(12, 60, 0.2), false},
	{"故意伤害罪", prison(12, 36, 0.3), true},
	{"寻衅滋事罪", prison(6, 24, 0.3), false},
	{"交通肇事罪", prison(12, 36, 0.6), false},
	{"开设赌场罪", prison(12, 36, 0.3), false},
	{"非法持有毒品罪", prison(6, 24, 0.1), false},
	{"抢劫罪", prison(36, 120, 0), true},
}

// court names the basic people's court of a county, or the intermediate
// people's court of its prefecture.
func court(county string, intermediate bool) string {
	chain := regionChain(county)
	if intermediate {
		return regionName(chain[1]) + "中级人民法院"
	}
	n := regionName(county)
	if strings.HasSuffix(n, "区") {
		return regionName(chain[1]) + n + "人民法院"
	}
	return n + "人民法院"
}
